//! Where to connect or listen: one address type for the client and the server.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
#[cfg(unix)]
use std::path::PathBuf;
use std::str::FromStr;

/// An address to connect to or listen on: what `Client::connect` and `Server::bind` take.
///
/// Parsed from a string by [`FromStr`]: `unix:/path/to/socket` is a Unix socket (on Unix
/// platforms), anything else must be a TCP `host:port` (an IPv6 host in brackets,
/// `[::1]:9999`), resolved when connecting or binding (every resolved address is tried in
/// turn). A host without a port, such as `"localhost"`, is rejected here, before any
/// connection attempt.
///
/// ```
/// use framewire_codec::Endpoint;
///
/// let tcp: Endpoint = "127.0.0.1:9999".parse()?;
/// assert_eq!(tcp.to_string(), "127.0.0.1:9999");
/// let err = "localhost".parse::<Endpoint>().unwrap_err();
/// assert_eq!(err.reason(), "no port: expected host:port, such as localhost:9999");
/// # #[cfg(unix)]
/// # {
/// let unix: Endpoint = "unix:/tmp/echo.sock".parse()?;
/// assert_eq!(unix.to_string(), "unix:/tmp/echo.sock");
/// # }
/// # Ok::<(), framewire_codec::EndpointError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP `host:port`, resolved when connecting or binding.
    Tcp(String),
    /// A Unix domain socket path.
    #[cfg(unix)]
    Unix(PathBuf),
    /// A stream the application connected itself and handed over (the client's
    /// `connect_stream`). It cannot be reopened, nor listened on.
    Stream,
}

impl Endpoint {
    /// A TCP endpoint from anything that formats as `host:port` (`"127.0.0.1:9999"`, a
    /// `SocketAddr`, ...). Not checked; [`FromStr`] checks.
    pub fn tcp(addr: impl fmt::Display) -> Self {
        Endpoint::Tcp(addr.to_string())
    }

    /// A Unix socket endpoint.
    #[cfg(unix)]
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Endpoint::Unix(path.into())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => f.write_str(addr),
            #[cfg(unix)]
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Stream => f.write_str("(application stream)"),
        }
    }
}

/// A string that is not an address: what [`Endpoint`]'s [`FromStr`] rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {endpoint:?}: {reason}")]
pub struct EndpointError {
    endpoint: String,
    reason: &'static str,
}

impl EndpointError {
    /// An error for `endpoint`, rejected for `reason`.
    pub fn new(endpoint: impl Into<String>, reason: &'static str) -> Self {
        EndpointError {
            endpoint: endpoint.into(),
            reason,
        }
    }

    /// The string that was given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// `unix:PATH` or `host:port`. Rejects an empty string, an empty Unix path, (on non-Unix
    /// platforms) any `unix:` address, a missing or non-numeric port, an empty host and an
    /// IPv6 host without brackets.
    fn from_str(s: &str) -> Result<Self, EndpointError> {
        let invalid = |reason: &'static str| EndpointError::new(s, reason);
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the unix socket path is empty"));
            }
            #[cfg(unix)]
            return Ok(Endpoint::Unix(PathBuf::from(path)));
            #[cfg(not(unix))]
            return Err(invalid("unix sockets are not available on this platform"));
        }
        if s.is_empty() {
            return Err(invalid("the address is empty"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(invalid(
                "no port: expected host:port, such as localhost:9999",
            ));
        };
        if host.is_empty() {
            return Err(invalid(
                "no host: expected host:port, such as localhost:9999",
            ));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(invalid(
                "an IPv6 host needs brackets: [::1]:9999, not ::1:9999",
            ));
        }
        if port.parse::<u16>().is_err() {
            return Err(invalid("the port is not a number from 0 to 65535"));
        }
        Ok(Endpoint::Tcp(s.to_string()))
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::tcp(addr)
    }
}

/// Anything that names an [`Endpoint`]: `"host:port"`, `"unix:/path"` (as `&str` or
/// `String`), a `SocketAddr`, an `(ip or host, port)` pair as for std's `ToSocketAddrs`, an
/// [`Endpoint`], and (in framewire-server) the server's own `Address`, so a client can connect
/// to `server.local_addr()`.
pub trait IntoEndpoint {
    /// Converts into an [`Endpoint`].
    ///
    /// # Errors
    ///
    /// [`EndpointError`] for a string that is not an address.
    fn into_endpoint(self) -> Result<Endpoint, EndpointError>;
}

impl IntoEndpoint for Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(self)
    }
}

impl IntoEndpoint for &Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(self.clone())
    }
}

impl IntoEndpoint for &str {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        self.parse()
    }
}

impl IntoEndpoint for String {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        self.parse()
    }
}

impl IntoEndpoint for &String {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        self.parse()
    }
}

impl IntoEndpoint for SocketAddr {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(self))
    }
}

impl IntoEndpoint for &SocketAddr {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(*self))
    }
}

impl IntoEndpoint for SocketAddrV4 {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(SocketAddr::V4(self)))
    }
}

impl IntoEndpoint for SocketAddrV6 {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(SocketAddr::V6(self)))
    }
}

impl IntoEndpoint for (IpAddr, u16) {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(SocketAddr::from(self)))
    }
}

impl IntoEndpoint for (Ipv4Addr, u16) {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(SocketAddr::from(self)))
    }
}

impl IntoEndpoint for (Ipv6Addr, u16) {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(Endpoint::from(SocketAddr::from(self)))
    }
}

impl IntoEndpoint for (&str, u16) {
    /// `("localhost", 9999)`, `("127.0.0.1", 0)`, `("::1", 9999)`: the host as std's
    /// `ToSocketAddrs` takes it (an IPv6 literal without brackets).
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        let (host, port) = self;
        if host.is_empty() {
            return Err(EndpointError::new(
                format!("{host}:{port}"),
                "no host: expected host:port, such as localhost:9999",
            ));
        }
        Ok(match host.parse::<IpAddr>() {
            Ok(ip) => Endpoint::from(SocketAddr::new(ip, port)),
            Err(_) => Endpoint::Tcp(format!("{host}:{port}")),
        })
    }
}

impl IntoEndpoint for (String, u16) {
    fn into_endpoint(self) -> Result<Endpoint, EndpointError> {
        (self.0.as_str(), self.1).into_endpoint()
    }
}

/// One endpoint or several: what the client's `connect` and
/// `connect_ack` take. Any [`IntoEndpoint`] is one; an array, a slice or a
/// `Vec` of them is a list, tried in order (failover).
///
/// ```
/// use framewire_codec::{Endpoint, IntoEndpoints};
///
/// // What `Client::connect(["10.0.0.1:9999", "10.0.0.2:9999"])` tries, in order:
/// let list = ["10.0.0.1:9999", "10.0.0.2:9999"].into_endpoints()?;
/// assert_eq!(list, [Endpoint::tcp("10.0.0.1:9999"), Endpoint::tcp("10.0.0.2:9999")]);
/// assert!(Vec::<&str>::new().into_endpoints().is_err());
/// # Ok::<(), framewire_codec::EndpointError>(())
/// ```
pub trait IntoEndpoints {
    /// Converts into a non-empty list of endpoints.
    ///
    /// # Errors
    ///
    /// [`EndpointError`] for a string that is not an address, or an empty list.
    fn into_endpoints(self) -> Result<Vec<Endpoint>, EndpointError>;
}

impl<T: IntoEndpoint> IntoEndpoints for T {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, EndpointError> {
        Ok(vec![self.into_endpoint()?])
    }
}

/// Converts every item; an empty list is an error.
fn endpoint_list<T: IntoEndpoint>(
    items: impl IntoIterator<Item = T>,
) -> Result<Vec<Endpoint>, EndpointError> {
    let list = items
        .into_iter()
        .map(IntoEndpoint::into_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(EndpointError::new("", "the list of endpoints is empty"));
    }
    Ok(list)
}

impl<T: IntoEndpoint, const N: usize> IntoEndpoints for [T; N] {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, EndpointError> {
        endpoint_list(self)
    }
}

impl<T: IntoEndpoint> IntoEndpoints for Vec<T> {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, EndpointError> {
        endpoint_list(self)
    }
}

impl<'a, T> IntoEndpoints for &'a [T]
where
    &'a T: IntoEndpoint,
{
    fn into_endpoints(self) -> Result<Vec<Endpoint>, EndpointError> {
        endpoint_list(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> &'static str {
        s.parse::<Endpoint>().unwrap_err().reason()
    }

    #[test]
    fn host_port_strings() {
        for ok in [
            "127.0.0.1:9999",
            "localhost:0",
            "[::1]:9999",
            "example.com:65535",
        ] {
            assert_eq!(ok.parse::<Endpoint>().unwrap(), Endpoint::Tcp(ok.into()));
        }
        assert!(reason("localhost").starts_with("no port"));
        assert!(reason(":9999").starts_with("no host"));
        assert!(reason("::1:9999").starts_with("an IPv6 host needs brackets"));
        assert!(reason("localhost:http").starts_with("the port is not a number"));
        assert!(reason("localhost:65536").starts_with("the port is not a number"));
        assert!(reason("").starts_with("the address is empty"));
        assert!(reason("unix:").starts_with("the unix socket path is empty"));
    }

    #[test]
    fn pairs_like_to_socket_addrs() {
        let v6 = ("::1", 9999).into_endpoint().unwrap();
        assert_eq!(v6.to_string(), "[::1]:9999");
        let host = ("localhost", 0).into_endpoint().unwrap();
        assert_eq!(host, Endpoint::Tcp("localhost:0".into()));
        let ip = (Ipv4Addr::LOCALHOST, 7).into_endpoint().unwrap();
        assert_eq!(ip.to_string(), "127.0.0.1:7");
        assert!(("", 7).into_endpoint().is_err());
    }
}

//! TLS through rustls (feature `tls`): the client side of the handshake, run over any
//! [`ByteStream`] on every connect and reconnect.

#[cfg(feature = "tls")]
pub(crate) use with_tls::ClientTls;

#[cfg(not(feature = "tls"))]
pub(crate) use without_tls::ClientTls;

#[cfg(feature = "tls")]
mod with_tls {
    use std::fmt;
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;

    use crate::transport::ByteStream;
    use crate::{ClientError, Endpoint};

    /// A rustls client configuration and the name the server's certificate must carry.
    #[derive(Clone)]
    pub(crate) struct ClientTls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    }

    impl fmt::Debug for ClientTls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ClientTls")
                .field("server_name", &self.server_name)
                .finish_non_exhaustive()
        }
    }

    impl ClientTls {
        pub(crate) fn new(
            config: Arc<rustls::ClientConfig>,
            server_name: ServerName<'static>,
        ) -> Self {
            ClientTls {
                connector: TlsConnector::from(config),
                server_name,
            }
        }

        /// Runs the handshake over `stream`.
        ///
        /// # Errors
        ///
        /// [`ClientError::Tls`] with rustls' reason (an untrusted, expired or wrong-name
        /// certificate, a server that does not speak TLS, ...).
        pub(crate) async fn handshake(
            &self,
            stream: ByteStream,
            endpoint: &Endpoint,
        ) -> Result<ByteStream, ClientError> {
            match self
                .connector
                .connect(self.server_name.clone(), stream)
                .await
            {
                Ok(tls) => Ok(ByteStream::boxed(tls)),
                Err(source) => Err(ClientError::Tls {
                    endpoint: endpoint.to_string(),
                    source,
                }),
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
mod without_tls {
    use crate::transport::ByteStream;
    use crate::{ClientError, Endpoint};

    /// Without the `tls` feature there is no TLS configuration: this type has no values.
    #[derive(Debug, Clone)]
    pub(crate) enum ClientTls {}

    impl ClientTls {
        pub(crate) async fn handshake(
            &self,
            _stream: ByteStream,
            _endpoint: &Endpoint,
        ) -> Result<ByteStream, ClientError> {
            match *self {}
        }
    }
}

//! [`TypedFramed`]: a typed `Stream + Sink` over a stream of frames.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use serde::{de::DeserializeOwned, Serialize};

use super::{Bincode, Format, TypedError};

/// A typed `Stream + Sink` over a stream and sink of frames.
///
/// Wraps anything that yields frames as `Result<Bytes, E>` and/or accepts `Bytes` (typically
/// `Framed<T, FrameCodec>`, also `FramedRead`/`FramedWrite` or tokio-util's
/// `LengthDelimitedCodec`) and turns it into:
///
/// * a `Stream<Item = Result<In, TypedError>>`: each frame is decoded as one `In` with format
///   `F`. A frame that does not decode yields [`TypedError::Decode`] or
///   [`TypedError::TrailingBytes`] *for that frame* and the stream continues with the next
///   frame. An error from the inner stream yields [`TypedError::Frame`] (check
///   [`TypedError::is_connection_usable`]); the stream then ends or not as the inner stream
///   does (`Framed` ends).
/// * a `Sink<Out>` (and [`send_ref`](TypedFramed::send_ref) for sending by reference): each
///   value is encoded into one frame. An unencodable value
///   is [`TypedError::Encode`] from `start_send` and nothing is sent; the sink stays usable.
///
/// `In` and `Out` may differ (a request type one way, a response type the other). The format
/// defaults to [`Bincode`].
///
/// The inner stream must be `Unpin` (`Framed` over a `TcpStream` is); pin anything else with
/// `Box::pin` first.
///
/// # Cancellation safety
///
/// `next()` is cancellation safe if the inner stream's is (`Framed`'s is): a frame is decoded
/// in the same poll that receives it, so dropping the future before it completes loses
/// nothing. `send()` is as cancellation safe as the inner sink's: a value handed to
/// `start_send` is in the inner sink's buffer.
///
/// # Examples
///
/// A bad frame between two good ones costs only itself:
///
/// ```
/// use bytes::Bytes;
/// use framewire_codec::{typed::TypedFramed, FrameCodec};
/// use futures::{SinkExt, StreamExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), framewire_codec::typed::TypedError> {
/// let (a, b) = tokio::io::duplex(1024);
/// let mut raw = FrameCodec::new().framed(a);
/// raw.send(Bytes::from_static(&[5])).await?; // u32 5 in bincode
/// raw.send(Bytes::from_static(&[0xff])).await?; // 0xff is not a valid varint start here: bad frame
/// raw.send(Bytes::from_static(&[6])).await?;
///
/// let mut typed = TypedFramed::<_, u32, u32>::new(FrameCodec::new().framed(b));
/// assert_eq!(typed.next().await.transpose()?, Some(5));
/// let err = typed.next().await.expect("an item").unwrap_err();
/// assert!(err.is_decode() && err.is_connection_usable());
/// assert_eq!(err.frame_len(), Some(1));
/// assert_eq!(typed.next().await.transpose()?, Some(6));
/// # Ok(())
/// # }
/// ```
pub struct TypedFramed<S, In, Out, F = Bincode> {
    inner: S,
    /// Encode buffer; each frame is split off it, so its allocation is reused once the
    /// inner sink has written the previous frame.
    scratch: BytesMut,
    _types: PhantomData<fn(Out) -> (In, F)>,
}

impl<S, In, Out, F> TypedFramed<S, In, Out, F> {
    /// Wraps a stream/sink of frames.
    pub fn new(inner: S) -> Self {
        TypedFramed {
            inner,
            scratch: BytesMut::new(),
            _types: PhantomData,
        }
    }

    /// The wrapped stream/sink.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream/sink, mutably. Sending raw frames through it is allowed (they are
    /// ordinary frames); reading through it bypasses decoding.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream/sink of frames. Nothing is buffered in this adapter, so nothing is
    /// lost.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn encode_frame<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<Bytes, TypedError>
    where
        F: Format,
    {
        self.scratch.clear();
        super::encode_into::<F, T>(value, &mut self.scratch)?;
        Ok(self.scratch.split().freeze())
    }
}

impl<S: fmt::Debug, In, Out, F> fmt::Debug for TypedFramed<S, In, Out, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedFramed")
            .field("inner", &self.inner)
            .field("in", &std::any::type_name::<In>())
            .field("out", &std::any::type_name::<Out>())
            .field("format", &std::any::type_name::<F>())
            .finish()
    }
}

impl<S, E, In, Out, F> Stream for TypedFramed<S, In, Out, F>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    TypedError: From<E>,
    In: DeserializeOwned,
    F: Format,
{
    type Item = Result<In, TypedError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(TypedError::from(e)))),
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(F::decode::<In>(&frame))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<S, In, Out, F> TypedFramed<S, In, Out, F>
where
    S: Sink<Bytes> + Unpin,
    TypedError: From<S::Error>,
    Out: Serialize,
    F: Format,
{
    fn start_send_ref(&mut self, item: &Out) -> Result<(), TypedError> {
        let frame = self.encode_frame(item)?;
        Pin::new(&mut self.inner)
            .start_send(frame)
            .map_err(TypedError::from)
    }

    /// Sends a value by reference and flushes: `SinkExt::send` without giving up the value.
    ///
    /// # Errors
    ///
    /// As for the `Sink`: [`TypedError::Encode`] (nothing sent, sink usable),
    /// [`TypedError::Frame`] from the inner sink (check [`TypedError::is_connection_usable`]).
    ///
    /// # Cancellation safety
    ///
    /// If the future is dropped before the value was handed to the inner sink, nothing is
    /// sent; after that the encoded frame stays in the inner sink's buffer and goes out with
    /// the next send or flush. Either way no partial frame is written.
    pub async fn send_ref(&mut self, item: &Out) -> Result<(), TypedError> {
        std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_ready(cx))
            .await
            .map_err(TypedError::from)?;
        self.start_send_ref(item)?;
        std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_flush(cx))
            .await
            .map_err(TypedError::from)
    }
}

impl<S, In, Out, F> Sink<Out> for TypedFramed<S, In, Out, F>
where
    S: Sink<Bytes> + Unpin,
    TypedError: From<S::Error>,
    Out: Serialize,
    F: Format,
{
    type Error = TypedError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TypedError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_ready(cx)
            .map_err(TypedError::from)
    }

    fn start_send(self: Pin<&mut Self>, item: Out) -> Result<(), TypedError> {
        self.get_mut().start_send_ref(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TypedError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(TypedError::from)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TypedError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(TypedError::from)
    }
}

//! `AsyncWrite` for the server's stream wrappers (PROXY front bytes, a user's stream, TLS),
//! which all forward writes to the stream they wrap: written once here.

/// Implements `AsyncWrite` for a wrapper by forwarding every call to an inner stream.
///
/// Bounds go in brackets (`impl<T: [AsyncWrite + Unpin]> for Front<T>`). `|this| inner` turns `this: Pin<&mut Self>` into the inner stream's `Pin<&mut _>`;
/// `vectored: |this| expr` answers `is_write_vectored` from `this: &Self`.
macro_rules! forward_async_write {
    (
        impl<$T:ident: [$($bound:tt)+]> for $ty:ty,
        |$this:ident| $inner:expr,
        vectored: |$me:ident| $vectored:expr $(,)?
    ) => {
        impl<$T: $($bound)+> tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $this = self;
                $inner.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $this = self;
                $inner.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                let $me = self;
                $vectored
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self;
                $inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $this = self;
                $inner.poll_shutdown(cx)
            }
        }
    };
}

pub(crate) use forward_async_write;

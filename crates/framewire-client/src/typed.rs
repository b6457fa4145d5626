//! Typed messages: one serde value per frame (bincode 2 by default), in plain and ack mode.
//!
//! Encoding and decoding go through `framewire_codec::typed`. A frame that does not decode is
//! an error for that message only ([`ClientError::Typed`]); the connection stays usable and
//! the next message decodes normally.

use serde::de::DeserializeOwned;
use serde::Serialize;

use framewire_codec::typed::{self, Bincode, Format};

use crate::{
    AckClient, AckReceiver, AckSender, Client, ClientError, ClientReceiver, ClientSender, Receipt,
};

/// A typed message received in ack mode: the value with its sequence number and redelivery
/// flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedDelivery<T> {
    /// Its sequence number on the connection it arrived on (1, 2, 3, ...).
    pub seq: u64,
    /// The decoded value.
    pub value: T,
    /// The sender flagged it as a redelivery (it may have been delivered before).
    pub redelivered: bool,
}

fn encode<F: Format, T: Serialize + ?Sized>(value: &T) -> Result<bytes::Bytes, ClientError> {
    typed::encode::<F, T>(value).map_err(ClientError::Typed)
}

fn decode<F: Format, T: DeserializeOwned>(payload: &[u8]) -> Result<T, ClientError> {
    typed::decode::<F, T>(payload).map_err(ClientError::Typed)
}

impl Client {
    /// Sends one value as one frame, encoded with bincode 2 (see
    /// [`send_typed_with`](Self::send_typed_with) for another format).
    ///
    /// # Errors
    ///
    /// [`ClientError::Typed`] if the value cannot be encoded (nothing was sent), otherwise as
    /// [`send`](Self::send).
    pub async fn send_typed<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ClientError> {
        self.send_typed_with::<Bincode, T>(value).await
    }

    /// Sends one value encoded with format `F`.
    ///
    /// # Errors
    ///
    /// As [`send_typed`](Self::send_typed).
    pub async fn send_typed_with<F: Format, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ClientError> {
        let payload = encode::<F, T>(value)?;
        self.send(payload).await
    }

    /// Receives one frame and decodes it as a `T` with bincode 2. `Ok(None)` when the peer
    /// closed cleanly.
    ///
    /// # Errors
    ///
    /// [`ClientError::Typed`] if the frame does not decode: that message is consumed, the
    /// connection is intact and the next call reads the next frame. Otherwise as
    /// [`recv`](Self::recv).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe, as [`recv`](Self::recv).
    pub async fn recv_typed<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        self.recv_typed_with::<Bincode, T>().await
    }

    /// Receives one frame and decodes it with format `F`.
    ///
    /// # Errors
    ///
    /// As [`recv_typed`](Self::recv_typed).
    pub async fn recv_typed_with<F: Format, T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ClientError> {
        match self.recv().await? {
            Some(frame) => decode::<F, T>(&frame).map(Some),
            None => Ok(None),
        }
    }

    /// Sends a value and decodes the next incoming frame as the reply (bincode 2).
    ///
    /// # Errors
    ///
    /// As [`send_typed`](Self::send_typed) and [`call`](Self::call); a reply that does not
    /// decode is [`ClientError::Typed`].
    pub async fn call_typed<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &mut self,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let payload = encode::<Bincode, Req>(request)?;
        let reply = self.call(payload).await?;
        decode::<Bincode, Resp>(&reply)
    }
}

impl ClientSender {
    /// Sends one value as one frame (bincode 2). See [`Client::send_typed`].
    ///
    /// # Errors
    ///
    /// As [`Client::send_typed`].
    pub async fn send_typed<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ClientError> {
        let payload = encode::<Bincode, T>(value)?;
        self.send(payload).await
    }
}

impl ClientReceiver {
    /// Receives one frame and decodes it (bincode 2). See [`Client::recv_typed`].
    ///
    /// # Errors
    ///
    /// As [`Client::recv_typed`].
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe.
    pub async fn recv_typed<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        match self.recv().await? {
            Some(frame) => decode::<Bincode, T>(&frame).map(Some),
            None => Ok(None),
        }
    }
}

impl AckSender {
    /// Sends one value (bincode 2) in ack mode; returns once it fits in the window, with its
    /// [`Receipt`]. See [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// [`ClientError::Typed`] if the value cannot be encoded (nothing was sent), otherwise as
    /// [`send`](Self::send).
    pub async fn send_typed<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Receipt, ClientError> {
        let payload = encode::<Bincode, T>(value)?;
        self.send(payload).await
    }
}

impl AckReceiver {
    /// Receives the next message and decodes it (bincode 2). The message is acknowledged
    /// whether or not it decodes (the application did take it).
    ///
    /// # Errors
    ///
    /// [`ClientError::Typed`] for a message that does not decode (the next one is
    /// unaffected), otherwise as [`recv`](Self::recv).
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe.
    pub async fn recv_typed<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<TypedDelivery<T>>, ClientError> {
        match self.recv().await? {
            Some(d) => Ok(Some(TypedDelivery {
                seq: d.seq,
                value: decode::<Bincode, T>(&d.payload)?,
                redelivered: d.redelivered,
            })),
            None => Ok(None),
        }
    }
}

impl AckClient {
    /// See [`AckSender::send_typed`].
    ///
    /// # Errors
    ///
    /// As [`AckSender::send_typed`].
    pub async fn send_typed<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Receipt, ClientError> {
        self.sender().send_typed(value).await
    }

    /// See [`AckReceiver::recv_typed`].
    ///
    /// # Errors
    ///
    /// As [`AckReceiver::recv_typed`].
    pub async fn recv_typed<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<TypedDelivery<T>>, ClientError> {
        self.receiver().recv_typed().await
    }
}

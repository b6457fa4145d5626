//! Pure decode tests: no IO, every way of splitting the input.

mod common;

use bytes::{BufMut, BytesMut};
use common::{decode_chunks, encode_all, sample_frames};
use framewire_codec::{ByteOrder, FrameCodec, FrameError, OversizedFrame, HEADER_LEN};
use tokio_util::codec::{Decoder, Encoder};

fn as_vecs(frames: Vec<bytes::Bytes>) -> Vec<Vec<u8>> {
    frames.into_iter().map(|b| b.to_vec()).collect()
}

#[test]
fn wire_example_bytes() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec
        .encode(bytes::Bytes::copy_from_slice(&b"hello"[..]), &mut buf)
        .unwrap();
    codec
        .encode(bytes::Bytes::copy_from_slice(&b""[..]), &mut buf)
        .unwrap();
    codec
        .encode(bytes::Bytes::copy_from_slice(&b"hi"[..]), &mut buf)
        .unwrap();
    assert_eq!(
        &buf[..],
        b"\x00\x00\x00\x05hello\x00\x00\x00\x00\x00\x00\x00\x02hi"
    );
}

#[test]
fn split_at_every_index() {
    let frames = sample_frames();
    let wire = encode_all(&mut FrameCodec::new(), &frames);
    for i in 0..=wire.len() {
        let (a, b) = wire.split_at(i);
        let got = decode_chunks(FrameCodec::new(), [a, b]).unwrap();
        assert_eq!(as_vecs(got), frames, "split at {i}");
    }
}

#[test]
fn split_at_every_pair_of_indices_small() {
    let frames = vec![b"ab".to_vec(), Vec::new(), b"cde".to_vec()];
    let wire = encode_all(&mut FrameCodec::new(), &frames);
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let got = decode_chunks(FrameCodec::new(), [&wire[..i], &wire[i..j], &wire[j..]]);
            assert_eq!(as_vecs(got.unwrap()), frames, "split at {i},{j}");
        }
    }
}

#[test]
fn byte_at_a_time() {
    let frames = sample_frames();
    let wire = encode_all(&mut FrameCodec::new(), &frames);
    let got = decode_chunks(FrameCodec::new(), wire.chunks(1)).unwrap();
    assert_eq!(as_vecs(got), frames);
}

#[test]
fn little_endian_round_trip_and_bytes() {
    let mut codec = FrameCodec::builder()
        .byte_order(ByteOrder::LittleEndian)
        .build();
    let mut buf = BytesMut::new();
    codec.encode(bytes::Bytes::from("hey"), &mut buf).unwrap();
    assert_eq!(&buf[..], b"\x03\x00\x00\x00hey");
    assert_eq!(
        codec.decode(&mut buf).unwrap().as_deref(),
        Some(&b"hey"[..])
    );
}

#[test]
fn oversized_incoming_frame_names_both_numbers() {
    let mut codec = FrameCodec::builder().max_frame_len(100).build();
    let mut buf = BytesMut::new();
    buf.put_u32(101);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::IncomingTooLong { len: 101, max: 100 }
    ));
    assert_eq!(
        err.to_string(),
        "incoming frame of 101 bytes exceeds the limit of 100 bytes"
    );
    assert!(err.is_peer_fault());
}

#[test]
fn max_size_frame_is_accepted() {
    let mut codec = FrameCodec::builder().max_frame_len(100).build();
    let frame = [7u8; 100];
    let mut buf = BytesMut::new();
    codec
        .encode(bytes::Bytes::copy_from_slice(&frame[..]), &mut buf)
        .unwrap();
    assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&frame[..]));
}

#[test]
fn oversized_outgoing_frame_is_refused_and_writes_nothing() {
    let mut codec = FrameCodec::builder().max_frame_len(4).build();
    let mut buf = BytesMut::new();
    let err = codec
        .encode(bytes::Bytes::copy_from_slice(&b"12345"[..]), &mut buf)
        .unwrap_err();
    assert!(matches!(
        err,
        FrameError::OutgoingTooLong { len: 5, max: 4 }
    ));
    assert_eq!(
        err.to_string(),
        "outgoing frame of 5 bytes exceeds the limit of 4 bytes"
    );
    assert!(buf.is_empty());
    assert!(!err.is_peer_fault() && err.is_connection_usable());
}

#[test]
fn u32_max_header_is_an_error_not_a_panic() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::IncomingTooLong {
            len: 0xffff_ffff,
            ..
        }
    ));
}

#[test]
fn eof_mid_header_says_how_many_bytes() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&[0, 0][..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::TruncatedHeader { received: 2 }));
    assert_eq!(
        err.to_string(),
        "connection closed inside a frame header: 2 of 4 header bytes arrived"
    );
}

#[test]
fn eof_mid_payload_says_how_many_of_how_many() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x0ahello"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::TruncatedFrame {
            received: 5,
            expected: 10
        }
    ));
    assert_eq!(
        err.to_string(),
        "connection closed inside a frame: 5 of 10 payload bytes arrived"
    );
}

#[test]
fn clean_eof_between_frames_is_none() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x01x"[..]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap().as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn header_alone_announcing_8_mib_reserves_a_bounded_step() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    buf.put_u32(8 * 1024 * 1024);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(!codec.is_between_frames());
    assert!(
        buf.capacity() <= framewire_codec::GROWTH_STEP + HEADER_LEN,
        "capacity {} after an 8 MiB header",
        buf.capacity()
    );
    // The same header in tokio-util's codec reserves the announced length.
    let mut ldc = tokio_util::codec::LengthDelimitedCodec::new();
    let mut buf = BytesMut::new();
    buf.put_u32(8 * 1024 * 1024);
    assert_eq!(ldc.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() >= 8 * 1024 * 1024);
}

#[test]
fn memory_tracks_bytes_received_for_a_large_frame() {
    // Feed an 8 MiB frame in 64 KiB chunks: capacity never exceeds about twice what arrived.
    let total = 8 * 1024 * 1024;
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    buf.put_u32(total as u32);
    let chunk = vec![0xab; 64 * 1024];
    let mut received = 0;
    while received < total {
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&chunk);
        received += chunk.len();
        assert!(
            buf.capacity() <= 2 * (received + HEADER_LEN) + framewire_codec::GROWTH_STEP,
            "capacity {} after {} bytes",
            buf.capacity(),
            received
        );
    }
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.len(), total);
}

#[test]
fn discard_policy_skips_oversized_frames_and_stays_in_sync() {
    let mut big = FrameCodec::builder().max_frame_len(1 << 20).build();
    let frames = vec![
        b"one".to_vec(),
        vec![1u8; 500],
        b"two".to_vec(),
        vec![2u8; 40],
        Vec::new(),
    ];
    let wire = encode_all(&mut big, &frames);
    let small = || {
        FrameCodec::builder()
            .max_frame_len(32)
            .oversized_frame(OversizedFrame::Discard)
            .build()
    };
    for size in [1, 3, 7, 64, wire.len()] {
        let mut codec = small();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(size) {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f.to_vec());
            }
            // Skipped bytes are never buffered.
            assert!(buf.len() <= 32 + HEADER_LEN + size);
        }
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec(), Vec::new()]);
        let d = codec.discarded();
        assert_eq!(d.frames, 2);
        assert_eq!(d.bytes, 540);
        assert_eq!(d.last_len, Some(40));
    }
}

#[test]
fn eof_while_discarding_is_truncated_frame() {
    let mut codec = FrameCodec::builder()
        .max_frame_len(2)
        .oversized_frame(OversizedFrame::Discard)
        .build();
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x05abc"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        FrameError::TruncatedFrame {
            received: 3,
            expected: 5
        }
    ));
}

#[test]
fn decoded_frames_share_the_read_buffer() {
    // Zero-copy: the frame points into the buffer the bytes were read into.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"\x00\x00\x00\x03abc\x00\x00\x00\x01d");
    let start = buf.as_ptr() as usize;
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.as_ptr() as usize, start + HEADER_LEN);
}

#[test]
fn encoder_accepts_common_byte_types() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec
        .encode(bytes::Bytes::from_static(b"a"), &mut buf)
        .unwrap();
    codec
        .encode(bytes::Bytes::from(vec![b'b']), &mut buf)
        .unwrap();
    codec
        .encode(bytes::Bytes::copy_from_slice(&b"c"[..]), &mut buf)
        .unwrap();
    codec.encode(bytes::Bytes::from("d"), &mut buf).unwrap();
    codec
        .encode(bytes::Bytes::from(String::from("e")), &mut buf)
        .unwrap();
    codec
        .encode(bytes::Bytes::from(BytesMut::from(&b"f"[..])), &mut buf)
        .unwrap();
    codec.encode_parts(&[b"g", b"h"], &mut buf).unwrap();
    let got = decode_chunks(FrameCodec::new(), [&buf[..]]).unwrap();
    assert_eq!(
        as_vecs(got),
        ["a", "b", "c", "d", "e", "f", "gh"].map(|s| s.as_bytes().to_vec())
    );
}

/// `decode_buffered` takes exactly the whole, in-limit frames at the front and otherwise
/// leaves the buffer and the codec alone for `decode`.
#[test]
fn decode_buffered_is_the_fast_path_only() {
    let mut codec = FrameCodec::builder().max_frame_len(8).build();
    let mut buf =
        BytesMut::from(&b"\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x09123456789"[..]);
    assert_eq!(codec.decode_buffered(&mut buf).as_deref(), Some(&b"a"[..]));
    assert_eq!(codec.decode_buffered(&mut buf).as_deref(), Some(&b""[..]));
    // Over the limit: left for `decode`, which reports it.
    let before = buf.clone();
    assert_eq!(codec.decode_buffered(&mut buf), None);
    assert_eq!(buf, before);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::IncomingTooLong { len: 9, max: 8 })
    ));

    // A frame that spans reads: once `decode` has consumed its header, the fast path stays
    // out of the way until the frame is finished.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x03ab"[..]);
    assert_eq!(codec.decode_buffered(&mut buf), None);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"c\x00\x00\x00\x01d");
    assert_eq!(codec.decode_buffered(&mut buf), None);
    assert_eq!(
        codec.decode(&mut buf).unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    assert_eq!(codec.decode_buffered(&mut buf).as_deref(), Some(&b"d"[..]));
    assert!(buf.is_empty());
}

/// While an oversized frame is being discarded, its remaining bytes can look like frames; the
/// fast path must leave them to `decode`, which skips them.
#[test]
fn decode_buffered_stays_out_of_a_discard_in_progress() {
    let mut codec = FrameCodec::builder()
        .max_frame_len(4)
        .oversized_frame(OversizedFrame::Discard)
        .build();
    // A 9-byte frame (over the limit of 4), arriving in two parts; its second part
    // "\0\0\0\x01z" looks like a whole frame "z".
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x09abcd"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\x00\x00\x00\x01z\x00\x00\x00\x02ok");
    assert_eq!(codec.decode_buffered(&mut buf), None);
    assert_eq!(codec.decode(&mut buf).unwrap().as_deref(), Some(&b"ok"[..]));
    assert_eq!(codec.discarded().frames, 1);
}

#[test]
fn decode_buffered_little_endian_and_zero_limit() {
    let mut codec = FrameCodec::builder()
        .byte_order(ByteOrder::LittleEndian)
        .build();
    let mut buf = BytesMut::from(&b"\x02\x00\x00\x00hi"[..]);
    assert_eq!(codec.decode_buffered(&mut buf).as_deref(), Some(&b"hi"[..]));

    let mut codec = FrameCodec::builder().max_frame_len(0).build();
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x00\x00\x00\x01x"[..]);
    assert_eq!(codec.decode_buffered(&mut buf).as_deref(), Some(&b""[..]));
    assert_eq!(codec.decode_buffered(&mut buf), None);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::IncomingTooLong { len: 1, max: 0 })
    ));
}

/// `decode_without_reserve` decodes as `decode` does but leaves the buffer's room alone: on a
/// buffer with no spare room holding half a frame, `decode` asks for more (a reallocation that
/// copies the half frame), `decode_without_reserve` does not.
#[test]
fn decode_without_reserve_leaves_room_to_the_caller() {
    let mut wire = Vec::new();
    wire.extend_from_slice(&100u32.to_be_bytes());
    wire.extend_from_slice(&[7u8; 40]);
    for reserve in [true, false] {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::with_capacity(wire.len());
        buf.extend_from_slice(&wire);
        assert_eq!(buf.capacity(), buf.len());
        let got = if reserve {
            codec.decode(&mut buf).unwrap()
        } else {
            codec.decode_without_reserve(&mut buf).unwrap()
        };
        assert_eq!(got, None);
        assert_eq!(codec.missing(buf.len()), Some(60));
        if reserve {
            assert!(buf.capacity() > buf.len(), "decode makes room");
        } else {
            assert_eq!(
                buf.capacity(),
                buf.len(),
                "decode_without_reserve makes none"
            );
        }
        // The rest arrives: both decode the same frame.
        buf.extend_from_slice(&[7u8; 60]);
        let frame = codec.decode_without_reserve(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], &[7u8; 100][..]);
        assert!(buf.is_empty());
    }
}

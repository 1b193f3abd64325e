//! The fast path's frames: their layout, their limits, and the codec that reads them.
//! `python/snakepit_bridge/framing.py` is the same on the Python side; every constant here is
//! defined there too, once, and `tests::both_sides_agree` fails when the two differ.
//!
//! ```text
//! request:  u32 length | u64 id | u8 method | payload (a protobuf request)      little-endian
//! response: u32 length | u64 id | u8 status | payload (a protobuf CallResponse)
//! ```
//!
//! `length` counts everything after itself. Methods: [`RUN_MODULE`], [`CALL_INSTANCE`],
//! [`CANCEL`] (empty payload; the id names the call to cancel), [`AUTHENTICATE`] (the run's token:
//! the first frame on a TCP connection, answered [`STATUS_OK`]; any other first frame closes the
//! connection). Statuses: [`STATUS_OK`],
//! [`STATUS_FAILED`] (the payload is a UTF-8 message), [`STATUS_CANCELLED`] (empty payload;
//! nothing of the call runs any more).

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The bytes of the `length` field.
pub(crate) const LENGTH_BYTES: usize = 4;
/// What `length` counts besides the payload: the id and the method or status byte.
pub(crate) const LENGTH_OVERHEAD: usize = 9;
/// The bytes of a whole header: `length`, id, and method or status.
pub(crate) const HEADER_BYTES: usize = LENGTH_BYTES + LENGTH_OVERHEAD;
/// The largest message (request or result) a call carries by default: 256 MiB, as gRPC's limit.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// `RunModule`.
pub(crate) const RUN_MODULE: u8 = 1;
/// `CallInstance`.
pub(crate) const CALL_INSTANCE: u8 = 2;
/// Cancel the call with this frame's id.
pub(crate) const CANCEL: u8 = 3;
/// The run's token, first on a TCP connection.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) const AUTHENTICATE: u8 = 4;

/// A response: the payload is a protobuf `CallResponse`.
pub(crate) const STATUS_OK: u8 = 0;
/// The frame could not be served: the payload is a UTF-8 message.
pub(crate) const STATUS_FAILED: u8 = 1;
/// The call was cancelled and nothing of it runs any more (empty payload).
pub(crate) const STATUS_CANCELLED: u8 = 2;

/// Appends one frame to `out`.
pub(crate) fn encode(id: u64, code: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_BYTES + payload.len());
    encode_header(id, code, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends the header of a frame whose payload of `payload_len` bytes follows it (for a payload
/// encoded straight into the frame, never copied).
pub(crate) fn encode_header(id: u64, code: u8, payload_len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&((payload_len + LENGTH_OVERHEAD) as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.push(code);
}

/// One frame read from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole frame: its id, method or status, and payload (not copied out of the read buffer).
    Frame { id: u64, code: u8, payload: Bytes },
    /// A well-formed frame longer than the limit: its bytes are skipped, the connection stays.
    Oversized { id: u64, length: usize },
}

/// A stream of frames cannot be read any further.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FramingError {
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A length shorter than the header itself: nothing after it can be trusted.
    #[error("a frame length of {0} bytes is impossible (at least {LENGTH_OVERHEAD})")]
    ImpossibleLength(usize),
}

/// Reads frames of at most `max_frame` bytes (counted as `length` counts them); longer ones are
/// skipped and reported as [`Incoming::Oversized`], in as many reads as they take.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    max_frame: usize,
    /// Bytes of an oversized frame still to skip.
    skipping: usize,
}

impl FrameCodec {
    pub(crate) fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame,
            skipping: 0,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Incoming;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FramingError> {
        if self.skipping > 0 {
            let skipped = self.skipping.min(src.len());
            src.advance(skipped);
            self.skipping -= skipped;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if src.len() < HEADER_BYTES {
            src.reserve(HEADER_BYTES - src.len());
            return Ok(None);
        }
        let length = u32::from_le_bytes(src[..LENGTH_BYTES].try_into().expect("4 bytes")) as usize;
        if length < LENGTH_OVERHEAD {
            return Err(FramingError::ImpossibleLength(length));
        }
        let id = u64::from_le_bytes(
            src[LENGTH_BYTES..LENGTH_BYTES + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let code = src[HEADER_BYTES - 1];
        let payload_len = length - LENGTH_OVERHEAD;
        if length > self.max_frame {
            src.advance(HEADER_BYTES);
            let skipped = payload_len.min(src.len());
            src.advance(skipped);
            self.skipping = payload_len - skipped;
            return Ok(Some(Incoming::Oversized { id, length }));
        }
        if src.len() < HEADER_BYTES + payload_len {
            src.reserve(HEADER_BYTES + payload_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(payload_len).freeze();
        Ok(Some(Incoming::Frame { id, code, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u64, code: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(id, code, payload, &mut out);
        out
    }

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let mut bytes = frame(7, STATUS_OK, b"hello");
        bytes.extend(frame(8, STATUS_CANCELLED, b""));
        for cut in 0..bytes.len() {
            let mut codec = FrameCodec::new(1024);
            let mut buffer = BytesMut::from(&bytes[..cut]);
            let mut seen = Vec::new();
            while let Some(item) = codec.decode(&mut buffer).unwrap() {
                seen.push(item);
            }
            buffer.extend_from_slice(&bytes[cut..]);
            while let Some(item) = codec.decode(&mut buffer).unwrap() {
                seen.push(item);
            }
            assert_eq!(
                seen,
                [
                    Incoming::Frame {
                        id: 7,
                        code: STATUS_OK,
                        payload: Bytes::from_static(b"hello")
                    },
                    Incoming::Frame {
                        id: 8,
                        code: STATUS_CANCELLED,
                        payload: Bytes::new()
                    }
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_skipped_across_reads_and_the_next_one_is_read() {
        let mut codec = FrameCodec::new(LENGTH_OVERHEAD + 10);
        let big = frame(1, STATUS_OK, &[9; 100]);
        let mut buffer = BytesMut::from(&big[..50]);
        assert_eq!(
            codec.decode(&mut buffer).unwrap(),
            Some(Incoming::Oversized {
                id: 1,
                length: 100 + LENGTH_OVERHEAD
            })
        );
        assert_eq!(codec.decode(&mut buffer).unwrap(), None);
        buffer.extend_from_slice(&big[50..]);
        buffer.extend_from_slice(&frame(2, STATUS_OK, b"ok"));
        assert_eq!(
            codec.decode(&mut buffer).unwrap(),
            Some(Incoming::Frame {
                id: 2,
                code: STATUS_OK,
                payload: Bytes::from_static(b"ok")
            })
        );
    }

    #[test]
    fn an_impossible_length_is_an_error() {
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 9]);
        let error = FrameCodec::new(1024)
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap_err();
        assert!(matches!(error, FramingError::ImpossibleLength(3)));
    }

    /// The Python side's constants (`snakepit_bridge.framing`, and the value packing limits of
    /// `snakepit_bridge.values`) are the same as these.
    #[test]
    fn both_sides_agree() {
        let environment = crate::environment::PythonEnvironment::resolve(
            &crate::environment::EnvironmentOptions::default(),
        )
        .expect("the managed Python environment");
        let script = "import json\n\
            from snakepit_bridge import framing, values\n\
            print(json.dumps({\n\
              'LENGTH_BYTES': framing.LENGTH_BYTES, 'LENGTH_OVERHEAD': framing.LENGTH_OVERHEAD,\n\
              'HEADER_BYTES': framing.HEADER_BYTES, 'HEADER_STRUCT_SIZE': framing.HEADER.size,\n\
              'DEFAULT_MAX_MESSAGE_BYTES': framing.DEFAULT_MAX_MESSAGE_BYTES,\n\
              'RUN_MODULE': framing.RUN_MODULE, 'CALL_INSTANCE': framing.CALL_INSTANCE,\n\
              'CANCEL': framing.CANCEL, 'AUTHENTICATE': framing.AUTHENTICATE,\n\
              'STATUS_OK': framing.STATUS_OK,\n\
              'STATUS_FAILED': framing.STATUS_FAILED, 'STATUS_CANCELLED': framing.STATUS_CANCELLED,\n\
              'PACK_BELOW_LEVEL': values.PACK_BELOW_LEVEL, 'MAX_DEPTH': values.MAX_DEPTH}))";
        let output = std::process::Command::new(environment.python())
            .args(["-c", script])
            .env("PYTHONPATH", environment.package_root())
            .env_remove("SNAKEPIT_MAX_MESSAGE_BYTES")
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let python: std::collections::BTreeMap<String, usize> =
            serde_json::from_slice(&output.stdout).expect("a JSON map of numbers");
        let rust: std::collections::BTreeMap<String, usize> = [
            ("LENGTH_BYTES", LENGTH_BYTES),
            ("LENGTH_OVERHEAD", LENGTH_OVERHEAD),
            ("HEADER_BYTES", HEADER_BYTES),
            ("HEADER_STRUCT_SIZE", HEADER_BYTES),
            ("DEFAULT_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES),
            ("RUN_MODULE", RUN_MODULE.into()),
            ("CALL_INSTANCE", CALL_INSTANCE.into()),
            ("CANCEL", CANCEL.into()),
            ("AUTHENTICATE", AUTHENTICATE.into()),
            ("STATUS_OK", STATUS_OK.into()),
            ("STATUS_FAILED", STATUS_FAILED.into()),
            ("STATUS_CANCELLED", STATUS_CANCELLED.into()),
            ("PACK_BELOW_LEVEL", crate::convert::PACK_BELOW_LEVEL),
            ("MAX_DEPTH", crate::convert::MAX_DEPTH),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(python, rust);
    }
}

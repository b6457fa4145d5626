//! Varint encodings, for crafting length prefixes inside typed payloads.

/// postcard (LEB128) varint of `n`.
pub fn postcard_varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

//! SentencePiece `tokenizer.model` files: the pieces of the ModelProto (protobuf), read with a
//! small checked decoder. Only what the GGUF vocabulary needs: each piece's text, score and type.

use anyhow::{anyhow, bail, Result};

/// One vocabulary entry, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// SentencePiece's type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub kind: i32,
}

/// A protobuf reader over a byte slice; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos).ok_or_else(|| anyhow!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint longer than 10 bytes at byte {}", self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| {
            anyhow!("field of {n} bytes at byte {} runs past the end ({} bytes)", self.pos, self.data.len())
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field: (number, wire type, payload for length-delimited / value otherwise).
    fn field(&mut self) -> Result<(u64, Field<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed(self.take(8)?),
            2 => {
                let n = self.varint()?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed(self.take(4)?),
            w => bail!("unsupported protobuf wire type {w} at byte {}", self.pos),
        };
        Ok((key >> 3, value))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

/// The pieces of a serialized SentencePiece ModelProto.
pub fn parse(data: &[u8]) -> Result<Vec<Piece>> {
    let mut r = Reader { data, pos: 0 };
    let mut pieces = Vec::new();
    while r.pos < data.len() {
        if let (1, Field::Bytes(body)) = r.field()? {
            pieces.push(parse_piece(body).map_err(|e| anyhow!("piece {}: {e}", pieces.len()))?);
        }
    }
    if pieces.is_empty() {
        bail!("not a SentencePiece model: no pieces");
    }
    Ok(pieces)
}

fn parse_piece(body: &[u8]) -> Result<Piece> {
    let mut r = Reader { data: body, pos: 0 };
    let mut p = Piece { piece: String::new(), score: 0.0, kind: 1 };
    let mut has_text = false;
    while r.pos < body.len() {
        match r.field()? {
            (1, Field::Bytes(b)) => {
                p.piece = String::from_utf8(b.to_vec()).map_err(|_| anyhow!("text is not UTF-8"))?;
                has_text = true;
            }
            (2, Field::Fixed(b)) if b.len() == 4 => p.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (3, Field::Varint(v)) if (1..=6).contains(&v) => p.kind = v as i32,
            (3, Field::Varint(v)) => bail!("unknown piece type {v}"),
            _ => {}
        }
    }
    if !has_text {
        bail!("no text");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: u8) -> Vec<u8> {
        let mut b = vec![0x0a, text.len() as u8];
        b.extend_from_slice(text.as_bytes());
        b.push(0x15);
        b.extend_from_slice(&score.to_le_bytes());
        b.extend_from_slice(&[0x18, kind]);
        let mut out = vec![0x0a, b.len() as u8];
        out.extend(b);
        out
    }

    #[test]
    fn reads_pieces_and_skips_other_fields() {
        let mut data = piece("<unk>", 0.0, 2);
        data.extend([0x12, 0x02, 0x08, 0x01]); // trainer_spec { model_type: 1 }
        data.extend(piece("\u{2581}the", -3.5, 1));
        let p = parse(&data).unwrap();
        assert_eq!(
            p,
            vec![
                Piece { piece: "<unk>".into(), score: 0.0, kind: 2 },
                Piece { piece: "\u{2581}the".into(), score: -3.5, kind: 1 }
            ]
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut data = piece("<unk>", 0.0, 2);
        data.extend(piece("abc", -1.0, 1));
        for n in 1..data.len() {
            if n == piece("<unk>", 0.0, 2).len() {
                continue; // a whole first piece is a valid model
            }
            assert!(parse(&data[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}

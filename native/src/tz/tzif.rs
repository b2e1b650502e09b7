//! The TZif file format (RFC 8536), versions 1 to 4: what zoneinfo's `load_data` reads.

use super::{bad, ZoneError};

/// The parts of a TZif file a zone is built from.
pub struct TzifFile {
    pub trans_utc: Vec<i64>,
    /// Per transition, the local time type it switches to.
    pub trans_idx: Vec<u8>,
    /// Per local time type: UTC offset (seconds) and whether it is daylight time.
    pub utcoff: Vec<i64>,
    pub isdst: Vec<bool>,
    /// The POSIX TZ string after the table (version 2+).
    pub footer: Option<String>,
}

/// Read the version 2+ data when present (64-bit times), else the version 1 data.
pub fn parse(data: &[u8]) -> Result<TzifFile, ZoneError> {
    let mut r = Reader { data, pos: 0 };
    let mut header = r.header()?;
    let mut time_size = 4;
    if header.version >= 2 {
        r.skip(header.v1_data_len())?;
        header = r.header()?;
        time_size = 8;
    }
    let mut trans_utc = Vec::with_capacity(header.timecnt);
    for _ in 0..header.timecnt {
        trans_utc.push(if time_size == 4 {
            i64::from(r.i32()?)
        } else {
            r.i64()?
        });
    }
    let trans_idx = r.take(header.timecnt)?.to_vec();
    let mut utcoff = Vec::with_capacity(header.typecnt);
    let mut isdst = Vec::with_capacity(header.typecnt);
    for _ in 0..header.typecnt {
        utcoff.push(i64::from(r.i32()?));
        isdst.push(r.take(1)?[0] != 0);
        r.skip(1)?; // abbreviation index
    }
    if trans_idx.iter().any(|&i| usize::from(i) >= utcoff.len()) {
        return Err(bad(
            "TZif transition names a local time type that does not exist",
        ));
    }
    r.skip(header.charcnt)?;
    let footer = if header.version >= 2 {
        r.skip(header.isutcnt + header.isstdcnt + header.leapcnt * 12)?;
        Some(r.footer()?)
    } else {
        None
    };
    Ok(TzifFile {
        trans_utc,
        trans_idx,
        utcoff,
        isdst,
        footer,
    })
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn v1_data_len(&self) -> usize {
        self.timecnt * 5
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * 8
            + self.isstdcnt
            + self.isutcnt
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ZoneError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad("TZif file is truncated"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), ZoneError> {
        self.take(n).map(|_| ())
    }

    fn i32(&mut self) -> Result<i32, ZoneError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, ZoneError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn count(&mut self) -> Result<usize, ZoneError> {
        usize::try_from(self.i32()?).map_err(|_| bad("TZif header holds a negative count"))
    }

    fn header(&mut self) -> Result<Header, ZoneError> {
        if self.take(4)? != b"TZif" {
            return Err(bad("not a TZif file: magic not found"));
        }
        let version = match self.take(1)?[0] {
            0 => 1,
            c @ b'2'..=b'9' => c - b'0',
            other => return Err(bad(format!("TZif version byte {other} is not a version"))),
        };
        self.skip(15)?;
        Ok(Header {
            version,
            isutcnt: self.count()?,
            isstdcnt: self.count()?,
            leapcnt: self.count()?,
            timecnt: self.count()?,
            typecnt: self.count()?,
            charcnt: self.count()?,
        })
    }

    fn footer(&mut self) -> Result<String, ZoneError> {
        if self.take(1)? != b"\n" {
            return Err(bad("TZif footer does not start with a newline"));
        }
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| bad("TZif footer does not end with a newline"))?;
        String::from_utf8(rest[..end].to_vec()).map_err(|_| bad("TZif footer is not text"))
    }
}

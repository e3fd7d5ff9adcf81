//! The pipe protocol between a [`super::Sandbox`] and its rendering processes: one
//! length-prefixed JSON header per message, followed by the rendered bytes on success.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DocumentFormat, RenderLimits, TemplateError};

/// Largest job a child accepts (a template and a seed, both already size-capped at the edge).
pub(super) const MAX_JOB_BYTES: usize = 64 * 1024 * 1024;

/// A render job as it crosses the pipe.
#[derive(Serialize)]
pub(super) struct JobRef<'a> {
    pub(super) format: DocumentFormat,
    pub(super) template: &'a str,
    pub(super) data: &'a Value,
    pub(super) seed_hash: &'a str,
    pub(super) configuration_name: &'a str,
    pub(super) configuration_version: i32,
    pub(super) pdf_standard: Option<&'a str>,
    /// The assets, whose bytes follow the header in this order.
    pub(super) assets: Vec<AssetHeader>,
    pub(super) attachment: Option<&'a crate::RenderAttachment>,
    pub(super) limits: &'a RenderLimits,
}

/// An asset as announced in a job's header: its bytes follow the header.
#[derive(Serialize, Deserialize)]
pub(super) struct AssetHeader {
    pub(super) name: String,
    pub(super) kind: docbundle_domain::asset::AssetKind,
    pub(super) size: usize,
}

#[derive(Deserialize)]
pub(super) struct Job {
    pub(super) format: DocumentFormat,
    pub(super) template: String,
    pub(super) data: Value,
    pub(super) seed_hash: String,
    pub(super) configuration_name: String,
    pub(super) configuration_version: i32,
    #[serde(default)]
    pub(super) pdf_standard: Option<String>,
    #[serde(default)]
    pub(super) assets: Vec<AssetHeader>,
    #[serde(default)]
    pub(super) attachment: Option<crate::RenderAttachment>,
    pub(super) limits: RenderLimits,
}

/// A child's answer: the length of the bytes that follow, or why there are none. `fatal`
/// means the child is about to exit.
#[derive(Serialize, Deserialize)]
pub(super) struct Reply {
    pub(super) result: Result<u64, TemplateError>,
    pub(super) fatal: bool,
}

pub(super) fn write_frame(out: &mut impl Write, header: &[u8], body: &[u8]) -> std::io::Result<()> {
    write_frame_parts(out, header, &[body])
}

/// A header followed by a body in several parts (a job's assets), written without joining
/// them first.
pub(super) fn write_frame_parts(
    out: &mut impl Write,
    header: &[u8],
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(header)?;
    for part in parts {
        out.write_all(part)?;
    }
    out.flush()
}

pub(super) fn read_exact_vec(input: &mut impl Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(std::io::Error::other)?;
    input.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Reads one length-prefixed header; `None` at a clean end of stream.
pub(super) fn read_header(input: &mut impl Read, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over {max}"),
        ));
    }
    read_exact_vec(input, len).map(Some)
}

pub(super) fn read_reply(
    input: &mut impl Read,
    max_body: u64,
) -> std::io::Result<Option<(Reply, Vec<u8>)>> {
    let Some(header) = read_header(input, 1024 * 1024)? else {
        return Ok(None);
    };
    let reply: Reply = serde_json::from_slice(&header)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let body = match reply.result {
        // The engines cap their output; a little slack covers formats measured after the fact.
        Ok(len) if len > max_body.saturating_mul(2).max(1024 * 1024) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("answer of {len} bytes"),
            ))
        }
        Ok(len) => read_exact_vec(input, len as usize)?,
        Err(_) => Vec::new(),
    };
    Ok(Some((reply, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let reply = Reply {
            result: Ok(3),
            fatal: false,
        };
        let mut wire = Vec::new();
        write_frame(&mut wire, &serde_json::to_vec(&reply).unwrap(), b"abc").unwrap();
        let (back, body) = read_reply(&mut wire.as_slice(), 10).unwrap().unwrap();
        assert_eq!(back.result, Ok(3));
        assert_eq!(body, b"abc");
        assert!(read_reply(&mut [].as_slice(), 10).unwrap().is_none());
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_reply(&mut huge.as_slice(), 10).is_err());
    }
}

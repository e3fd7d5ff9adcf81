//! Artefact storage in S3 (or any S3-compatible store): put, get, and presigned downloads.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use tokio::sync::OnceCell;

use crate::error::{with_timeout, DependencyError};
use crate::AwsConfig;

/// One bucket of artefacts, reached through a client built once per process, on first use:
/// building it loads the system's root certificates, which a request that never reaches S3
/// (a `401`, say) should not pay for at a cold start.
#[derive(Clone, Debug)]
pub struct ArtefactStore {
    aws: AwsConfig,
    client: Arc<OnceCell<Client>>,
    bucket: String,
    timeout: Duration,
}

/// What a ranged read found.
pub enum Read {
    Stream(ByteStream),
    Missing,
    /// The object is no longer the one asked for (another was put under its key).
    Changed,
}

/// What a successful upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl ArtefactStore {
    pub fn new(aws: AwsConfig, bucket: impl Into<String>, timeout: Duration) -> Self {
        ArtefactStore {
            aws,
            client: Arc::default(),
            bucket: bucket.into(),
            timeout,
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                // Uploads carry our own SHA-256 (checked by S3); the SDK need not add a CRC on
                // top. An endpoint override (LocalStack) is addressed path-style.
                let config = aws_sdk_s3::config::Builder::from(self.aws.get().await)
                    .force_path_style(self.aws.endpoint().is_some())
                    .request_checksum_calculation(
                        aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                    )
                    .response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    )
                    .build();
                Client::from_conf(config)
            })
            .await
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stores `body` under `key`. Its SHA-256 travels as the S3 checksum (so S3 refuses a
    /// corrupted upload) and as metadata (so any reader can check the bytes).
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<StoredObject, DependencyError> {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&body);
        let sha256 = hex::encode(digest);
        let checksum = base64::engine::general_purpose::STANDARD.encode(digest);
        let size = body.len() as u64;
        let request = self
            .client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .metadata("sha256", &sha256)
            .checksum_sha256(checksum)
            .body(ByteStream::from(body))
            .send();
        with_timeout("s3", &format!("put {key}"), self.timeout, async {
            request.await.map_err(aws_error)
        })
        .await?;
        Ok(StoredObject {
            key: key.to_owned(),
            size,
            sha256,
        })
    }

    /// Reads the whole object; `Ok(None)` when there is no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DependencyError> {
        let body = match self.read_from(key, 0, None).await? {
            Read::Stream(body) => body,
            Read::Missing | Read::Changed => return Ok(None),
        };
        with_timeout("s3", &format!("get {key}"), self.timeout, async {
            body.collect()
                .await
                .map(|data| Some(data.into_bytes().to_vec()))
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// The size and ETag of the object at `key`; `Ok(None)` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, DependencyError> {
        let request = self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send();
        with_timeout("s3", &format!("head {key}"), self.timeout, async {
            match request.await {
                Ok(output) => Ok(Some((
                    output.content_length.unwrap_or(0).max(0) as u64,
                    output.e_tag,
                ))),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
                Err(e) => Err(aws_error(e)),
            }
        })
        .await
    }

    /// The object at `key` from byte `offset` on, as a stream read chunk by chunk (never whole
    /// in memory), if it is still the object of ETag `etag` (when given). The first answer
    /// must come within the timeout; each later read is bounded by the caller.
    pub async fn read_from(
        &self,
        key: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<Read, DependencyError> {
        let request = self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-"))
            .set_if_match(etag.map(str::to_owned))
            .send();
        with_timeout("s3", &format!("get {key}"), self.timeout, async {
            match request.await {
                Ok(output) => Ok(Read::Stream(output.body)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    Ok(Read::Missing)
                }
                Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                    // A range past the end: nothing left to read.
                    Some(416) => Ok(Read::Stream(ByteStream::from_static(b""))),
                    Some(412) => Ok(Read::Changed),
                    Some(404) => Ok(Read::Missing),
                    _ => Err(aws_error(e)),
                },
            }
        })
        .await
    }

    /// Deletes every version and delete marker of every object under `prefix` (the artefact
    /// bucket is versioned: a plain delete would leave the bytes in a noncurrent version).
    /// Returns how many versions went. Safe to repeat: a second call finds nothing.
    pub async fn delete_all_versions(&self, prefix: &str) -> Result<usize, DependencyError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let client = self.client().await;
        let mut deleted = 0;
        // Each page is deleted before the next is listed: listing again from the start
        // finds what is left, so no marker is needed.
        loop {
            let request = client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(1000)
                .send();
            let page = with_timeout(
                "s3",
                &format!("list versions {prefix}"),
                self.timeout,
                async { request.await.map_err(aws_error) },
            )
            .await?;
            let mut objects = Vec::new();
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            for (key, version) in versions.chain(markers) {
                let Some(key) = key else { continue };
                let id = ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .map_err(|e| DependencyError::failed("s3", "delete request", e))?;
                objects.push(id);
            }
            if objects.is_empty() {
                return Ok(deleted);
            }
            let count = objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| DependencyError::failed("s3", "delete request", e))?;
            let request = client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send();
            let answer = with_timeout("s3", &format!("delete {prefix}"), self.timeout, async {
                request.await.map_err(aws_error)
            })
            .await?;
            // A version another deletion removed meanwhile (two passes at once) is gone: what
            // was asked.
            let failed: Vec<_> = answer
                .errors()
                .iter()
                .filter(|e| !matches!(e.code(), Some("NoSuchVersion" | "NoSuchKey")))
                .collect();
            if let Some(first) = failed.first() {
                return Err(DependencyError::failed(
                    "s3",
                    format!("delete {prefix}"),
                    format!(
                        "{} of {count} versions not deleted, first {}: {} {}",
                        failed.len(),
                        first.key().unwrap_or_default(),
                        first.code().unwrap_or_default(),
                        first.message().unwrap_or_default()
                    ),
                ));
            }
            deleted += count;
        }
    }

    /// A URL that lets anyone holding it PUT `key` until it expires (a batch's seeds file).
    pub async fn presign_put(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, DependencyError> {
        let request = self
            .client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(expires_in)?)
            .await;
        presigned_uri(key, request)
    }

    /// A URL that lets anyone holding it GET `key` until it expires. The answer says
    /// `Content-Disposition: attachment`, so that a browser saves the file rather than opening
    /// it (an `html` artefact must not run on the storage's origin).
    pub async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, DependencyError> {
        let request = self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(attachment(key))
            .presigned(presigning(expires_in)?)
            .await;
        presigned_uri(key, request)
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, DependencyError> {
    PresigningConfig::expires_in(expires_in)
        .map_err(|e| DependencyError::failed("s3", "presign", e))
}

fn presigned_uri<E: std::error::Error>(
    key: &str,
    request: Result<aws_sdk_s3::presigning::PresignedRequest, E>,
) -> Result<String, DependencyError> {
    request
        .map(|request| request.uri().to_owned())
        .map_err(|e| DependencyError::failed("s3", format!("presign {key}"), aws_error(e)))
}

/// The SDK's plain `Display` says only "dispatch failure"; the context chain says why.
pub(crate) fn aws_error<E: std::error::Error>(e: E) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

/// `attachment; filename="…"` for the last segment of `key`, keeping only characters that need
/// no quoting (document names are already restricted to them).
fn attachment(key: &str) -> String {
    let name: String = key
        .rsplit('/')
        .next()
        .unwrap_or(key)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let name = if name.is_empty() {
        "download".to_owned()
    } else {
        name
    };
    format!("attachment; filename=\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn downloads_are_attachments_with_a_plain_file_name() {
        assert_eq!(
            attachment("merchants/a/runs/b/statement.html"),
            "attachment; filename=\"statement.html\""
        );
        assert_eq!(
            attachment("x/we\"ird\r\nname.pdf"),
            "attachment; filename=\"weirdname.pdf\""
        );
        assert_eq!(attachment("x/"), "attachment; filename=\"download\"");
    }
}

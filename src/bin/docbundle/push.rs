//! `docbundle push`: saves a folder as a configuration, its assets first; creates the
//! configuration, or adds a version with `If-Match` on the version the folder was last in step
//! with, and records the new version in `docbundle.yaml`.

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::api::{ApiError, Client};
use crate::folder::{load, record, Folder, FILE};

fn version_of(configuration: &Value) -> anyhow::Result<(Uuid, i32)> {
    let id = configuration["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .context("the API's configuration has no id")?;
    let version = configuration["version"]
        .as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .context("the API's configuration has no version")?;
    Ok((id, version))
}

/// Saves the folder in `dir`: creates the configuration, or adds a version of it.
pub async fn push(client: &Client, dir: &Path, force: bool) -> anyhow::Result<()> {
    let (limits, _) = docbundle::config::render_settings_from_env()?;
    let folder = load(dir, limits.max_template_bytes)?;
    let body = folder.body();
    upload_assets(client, &folder).await?;
    let Some(id) = folder.file.id else {
        return create(client, dir, &folder, &body).await;
    };
    let if_match = if_match(client, &folder, id, force).await?;
    let response = client
        .send(Method::PUT, &format!("/configurations/{id}"), |r| {
            r.header("if-match", &if_match).json(&body)
        })
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>() {
                if api.status == StatusCode::PRECONDITION_FAILED {
                    bail!(
                        "configuration {id} has changed since version {} (a newer version was \
                         saved): `docbundle pull {id} DIR` to see it, or push --force ({api})",
                        folder.file.version.unwrap_or_default()
                    );
                }
            }
            return Err(folder.annotate(e));
        }
    };
    let updated: Value = response.json().await?;
    let (_, version) = version_of(&updated)?;
    record(dir, id, version)?;
    println!("pushed `{}` {id}: version {version}", folder.file.name);
    Ok(())
}

/// The assets first: the configuration names them by hash. Bytes the API has already are
/// answered with their record.
async fn upload_assets(client: &Client, folder: &Folder) -> anyhow::Result<()> {
    for asset in &folder.assets {
        client
            .send(Method::POST, &format!("/assets?name={}", asset.name), |r| {
                r.header("content-type", asset.kind.content_type())
                    .body(asset.bytes.clone())
            })
            .await
            .with_context(|| format!("cannot upload asset {}", asset.name))?;
    }
    Ok(())
}

/// A folder never pushed: creates the configuration and records its id and first version.
async fn create(client: &Client, dir: &Path, folder: &Folder, body: &Value) -> anyhow::Result<()> {
    let response = client
        .send(Method::POST, "/configurations", |r| r.json(body))
        .await
        .map_err(|e| folder.annotate(e))?;
    let created: Value = response.json().await?;
    let (id, version) = version_of(&created)?;
    record(dir, id, version)?;
    println!(
        "created configuration `{}` {id}: version {version}",
        folder.file.name
    );
    Ok(())
}

/// The `If-Match` of the update: the version the folder was last in step with, or with
/// `force` the configuration's current ETag.
async fn if_match(
    client: &Client,
    folder: &Folder,
    id: Uuid,
    force: bool,
) -> anyhow::Result<String> {
    Ok(match (folder.file.version, force) {
        (Some(version), false) => format!("\"v{version}\""),
        (None, false) => bail!(
            "{FILE} names configuration {id} but no version: `docbundle pull {id} DIR` first, \
             or push --force"
        ),
        (_, true) => {
            let response = client
                .send(Method::GET, &format!("/configurations/{id}"), |r| r)
                .await?;
            response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .context("the API answered no ETag")?
                .to_owned()
        }
    })
}

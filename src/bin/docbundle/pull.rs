//! `docbundle pull`: writes a configuration (its current version, or a given one) out as a
//! folder: `docbundle.yaml` with its id and version, each template in a file of its own and the
//! assets under `assets/`, each checked against its SHA-256.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::api::Client;
use crate::folder::{implied_format, FolderDocument, FolderFile, FILE};

/// A file to write into the folder: its path there, and its contents.
type FileOut<T> = (String, T);

/// The file a pulled document's template goes to: `invoice.pdf` → `invoice.typ`,
/// `lines.csv` → `lines.csv.j2`; never the same file twice, never `docbundle.yaml`.
fn template_file(name: &str, format: &str, taken: &HashSet<String>) -> String {
    let preferred = if format == "pdf" {
        let stem = name
            .strip_suffix(".pdf")
            .or_else(|| name.strip_suffix(".PDF"))
            .unwrap_or(name);
        format!("{stem}.typ")
    } else {
        format!("{name}.j2")
    };
    if !taken.contains(&preferred.to_ascii_lowercase()) {
        return preferred;
    }
    let extension = if format == "pdf" { "typ" } else { "j2" };
    (1..)
        .map(|n| format!("{name}.{n}.{extension}"))
        .find(|f| !taken.contains(&f.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// Writes configuration `id` (its current version, or `version`) into `dir` as a folder.
pub async fn pull(
    client: &Client,
    id: Uuid,
    version: Option<i32>,
    dir: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let path = match version {
        Some(v) => format!("/configurations/{id}/versions/{v}"),
        None => format!("/configurations/{id}"),
    };
    let configuration = client.get_json(&path).await?;
    let version = configuration["version"]
        .as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .context("the API's configuration has no version")?;
    let documents = configuration["documents"]
        .as_array()
        .context("the API's configuration has no documents")?;
    if !force && dir.join(FILE).exists() {
        bail!(
            "{} exists: pick another folder, or --force to overwrite",
            dir.join(FILE).display()
        );
    }
    let (entries, files) = documents_of(documents)?;
    let (assets, files_bytes) = fetch_assets(client, &configuration).await?;
    let file = folder_file(&configuration, id, version, assets, entries);
    write_folder(dir, id, version, &file, &files, &files_bytes)?;
    println!(
        "pulled `{}` {id} version {version} into {} ({} templates)",
        file.name,
        dir.display(),
        files.len()
    );
    Ok(())
}

/// The folder's entries for the API's documents, and each template's `(file, text)`.
fn documents_of(
    documents: &[Value],
) -> anyhow::Result<(Vec<FolderDocument>, Vec<FileOut<String>>)> {
    let mut taken: HashSet<String> = HashSet::from([FILE.to_owned()]);
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for doc in documents {
        let (Some(name), Some(format), Some(template)) = (
            doc["name"].as_str(),
            doc["format"].as_str(),
            doc["template"].as_str(),
        ) else {
            bail!("the API's configuration has a document without name, format or template");
        };
        // Names come from the API; still, they become file names here.
        docbundle::domain::configuration::check_document_name(name)
            .map_err(|problem| anyhow::anyhow!("document name `{name}` {problem}"))?;
        let file = template_file(name, format, &taken);
        taken.insert(file.to_ascii_lowercase());
        entries.push(FolderDocument {
            name: name.to_owned(),
            format: (implied_format(name) != Some(format)).then(|| format.to_owned()),
            template: file.clone(),
            pdf_standard: doc["pdfStandard"].as_str().map(str::to_owned),
            signature: doc.get("signature").filter(|s| !s.is_null()).cloned(),
            einvoice: doc.get("einvoice").filter(|s| !s.is_null()).cloned(),
        });
        files.push((file, template.to_owned()));
    }
    Ok((entries, files))
}

/// The configuration's assets, downloaded and checked against their SHA-256: the folder's
/// `assets` map (name → file under `assets/`), and each file's `(path, bytes)`.
async fn fetch_assets(
    client: &Client,
    configuration: &Value,
) -> anyhow::Result<(BTreeMap<String, String>, Vec<FileOut<Vec<u8>>>)> {
    let mut assets = BTreeMap::new();
    let mut files_bytes: Vec<FileOut<Vec<u8>>> = Vec::new();
    if let Some(map) = configuration["assets"].as_object() {
        for (name, sha256) in map {
            docbundle::domain::asset::check_name(name)
                .map_err(|problem| anyhow::anyhow!("asset name `{name}` {problem}"))?;
            let sha256 = sha256.as_str().unwrap_or_default();
            if !docbundle::domain::asset::is_sha256(sha256) {
                bail!("the API's asset `{name}` has no SHA-256");
            }
            let bytes = client
                .send(Method::GET, &format!("/assets/{sha256}/content"), |r| r)
                .await?
                .bytes()
                .await?;
            if docbundle::domain::digest::sha256_hex(&bytes) != sha256 {
                bail!("asset `{name}` arrived damaged (its SHA-256 differs)");
            }
            let file = format!("assets/{name}");
            files_bytes.push((file.clone(), bytes.to_vec()));
            assets.insert(name.clone(), file);
        }
    }
    Ok((assets, files_bytes))
}

/// `docbundle.yaml` for the API's configuration at `version`.
fn folder_file(
    configuration: &Value,
    id: Uuid,
    version: i32,
    assets: BTreeMap<String, String>,
    documents: Vec<FolderDocument>,
) -> FolderFile {
    let text = |key: &str| configuration[key].as_str().map(str::to_owned);
    FolderFile {
        id: Some(id),
        version: Some(version),
        name: text("name").unwrap_or_default(),
        description: text("description"),
        schema: Some(configuration["dataSchema"].clone()).filter(|v| !v.is_null()),
        defaults: Some(configuration["defaults"].clone()).filter(|v| !v.is_null()),
        triggers: configuration["triggers"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        archive: configuration["archive"].as_bool().unwrap_or(false),
        assets,
        documents,
    }
}

/// Writes `docbundle.yaml`, the templates and the assets into `dir`.
fn write_folder(
    dir: &Path,
    id: Uuid,
    version: i32,
    file: &FolderFile,
    files: &[FileOut<String>],
    files_bytes: &[FileOut<Vec<u8>>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let yaml = format!(
        "# Configuration {id}, pulled at version {version}. `docbundle push` saves a new version.\n{}",
        yaml_serde::to_string(file)?
    );
    std::fs::write(dir.join(FILE), yaml)?;
    for (name, template) in files {
        std::fs::write(dir.join(name), template)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    if !files_bytes.is_empty() {
        std::fs::create_dir_all(dir.join("assets"))?;
    }
    for (name, bytes) in files_bytes {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_templates_get_distinct_files() {
        let mut taken = HashSet::from([FILE.to_owned()]);
        let mut files = Vec::new();
        for (name, format) in [
            ("invoice.pdf", "pdf"),
            ("invoice", "pdf"),
            ("lines.csv", "csv"),
            ("docbundle.yaml", "txt"),
        ] {
            let file = template_file(name, format, &taken);
            taken.insert(file.to_ascii_lowercase());
            files.push(file);
        }
        assert_eq!(
            files,
            [
                "invoice.typ",
                "invoice.1.typ",
                "lines.csv.j2",
                "docbundle.yaml.j2"
            ]
        );
    }
}

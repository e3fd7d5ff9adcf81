//! Templates as code: a configuration as a folder. `docbundle.yaml` holds what the API's
//! configuration body holds (name, description, schema, defaults, triggers, archive, the
//! documents), each template in its own file beside it, and, once pushed or pulled, the
//! configuration's `id` and the `version` the folder was last in step with (the `If-Match` of
//! the next push).
//!
//! A folder is untrusted input like any request: template paths stay inside the folder
//! (no `..`, no absolute path, no symbolic link out of it) and files are read up to the
//! template size limit, never further.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::{ApiError, Client};
use crate::ListArgs;

pub const FILE: &str = "docbundle.yaml";
/// Largest `docbundle.yaml` read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// `docbundle.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FolderFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The seeds' JSON Schema, inline or the name of a JSON file in the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// The seed of renders without one, inline or the name of a JSON file in the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub archive: bool,
    /// Images and fonts the templates use: the name they use → the file in the folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assets: BTreeMap<String, String>,
    pub documents: Vec<FolderDocument>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FolderDocument {
    /// The artefact's name (`invoice.pdf`).
    pub name: String,
    /// `pdf`, `html`, `md`, `txt`, `csv` or `json`; by default the name's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The template's file, relative to the folder.
    pub template: String,
    /// PDF documents: `a-2b`, `a-3b`, `ua-1`, … (enforced at save and on every render).
    #[serde(
        default,
        rename = "pdfStandard",
        skip_serializing_if = "Option::is_none"
    )]
    pub pdf_standard: Option<String>,
}

/// A folder read and resolved: every template's text, the schema and defaults as JSON.
#[derive(Debug, Clone)]
pub struct Folder {
    pub file: FolderFile,
    pub schema: Option<Value>,
    pub defaults: Option<Value>,
    /// `(name, format, template text, PDF standard)` in the file's order.
    pub documents: Vec<(String, String, String, Option<String>)>,
    /// The assets read and checked as an upload is.
    pub assets: Vec<FolderAsset>,
}

/// An asset of the folder: its name, bytes, kind and SHA-256.
#[derive(Debug, Clone)]
pub struct FolderAsset {
    pub name: String,
    pub bytes: Vec<u8>,
    pub kind: docbundle::domain::asset::AssetKind,
    pub sha256: String,
}

/// Largest asset read (the API's default `ASSET_MAX_BYTES`).
const MAX_ASSET_BYTES: u64 = 4 << 20;

impl Folder {
    /// The assets as the offline validation and render get them.
    pub fn stored_assets(&self) -> docbundle::domain::configuration::StoredAssets {
        self.assets
            .iter()
            .map(|a| {
                (
                    a.sha256.clone(),
                    (a.kind, bytes::Bytes::from(a.bytes.clone())),
                )
            })
            .collect()
    }
}

/// Reads at most `cap` bytes of `path`; more is an error naming the limit.
pub fn read_capped(path: &Path, cap: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} is larger than {what} ({cap} bytes)", path.display());
    }
    Ok(bytes)
}

/// `relative` inside `dir`: no absolute path, no `..`, and no symbolic link leading out.
fn inside(dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(relative);
    let plain = !relative.is_empty()
        && !relative.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        bail!("`{relative}` must be a path inside the folder (no `..`, not absolute)");
    }
    let root = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let full = root.join(path);
    let resolved = full
        .canonicalize()
        .with_context(|| format!("cannot read {}", full.display()))?;
    if !resolved.starts_with(&root) {
        bail!("`{relative}` leads out of the folder");
    }
    Ok(resolved)
}

/// The format a document name implies: its extension, when it is one.
fn implied_format(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    docbundle::render::DocumentFormat::names()
        .iter()
        .copied()
        .find(|f| *f == extension)
}

/// An inline JSON value, or the JSON file a string names.
fn inline_or_file(dir: &Path, value: Option<Value>, key: &str) -> anyhow::Result<Option<Value>> {
    match value {
        Some(Value::String(file)) => {
            let bytes = read_capped(&inside(dir, &file)?, MAX_FILE_BYTES, "the limit")?;
            let value = serde_json::from_slice(&bytes)
                .with_context(|| format!("`{key}` file {file} is not JSON"))?;
            Ok(Some(value))
        }
        other => Ok(other),
    }
}

pub fn load(dir: &Path, max_template_bytes: usize) -> anyhow::Result<Folder> {
    let path = dir.join(FILE);
    let text = String::from_utf8(read_capped(&path, MAX_FILE_BYTES, "the limit")?)
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let file: FolderFile =
        yaml_serde::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
    let mut documents = Vec::with_capacity(file.documents.len());
    for (i, doc) in file.documents.iter().enumerate() {
        let format = match (&doc.format, implied_format(&doc.name)) {
            (Some(format), _) => format.clone(),
            (None, Some(format)) => format.to_owned(),
            (None, None) => bail!(
                "{FILE}: documents[{i}] (`{}`) needs a `format`: its name has no known extension",
                doc.name
            ),
        };
        let template_path = inside(dir, &doc.template)
            .with_context(|| format!("{FILE}: documents[{i}].template"))?;
        let bytes = read_capped(
            &template_path,
            max_template_bytes as u64,
            "the template size limit",
        )?;
        let template = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8", template_path.display()))?;
        documents.push((doc.name.clone(), format, template, doc.pdf_standard.clone()));
    }
    let mut assets = Vec::with_capacity(file.assets.len());
    for (name, relative) in &file.assets {
        let path = inside(dir, relative).with_context(|| format!("{FILE}: assets.{name}"))?;
        let bytes = read_capped(&path, MAX_ASSET_BYTES, "the asset size limit")?;
        let kind = docbundle::domain::asset::inspect(&bytes)
            .map_err(|problem| anyhow::anyhow!("{FILE}: assets.{name} ({relative}): {problem}"))?;
        assets.push(FolderAsset {
            name: name.clone(),
            sha256: docbundle::domain::digest::sha256_hex(&bytes),
            bytes,
            kind,
        });
    }
    Ok(Folder {
        assets,
        schema: inline_or_file(dir, file.schema.clone(), "schema")?,
        defaults: inline_or_file(dir, file.defaults.clone(), "defaults")?,
        file,
        documents,
    })
}

impl Folder {
    /// The body of `POST`/`PUT /api/v1/configurations`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "name": self.file.name,
            "documents": self.documents.iter().map(|(name, format, template, standard)| {
                let mut doc = json!({"name": name, "format": format, "template": template});
                if let Some(standard) = standard {
                    doc["pdfStandard"] = json!(standard);
                }
                doc
            }).collect::<Vec<_>>(),
            "triggers": self.file.triggers,
            "archive": self.file.archive,
        });
        if let Some(description) = &self.file.description {
            body["description"] = json!(description);
        }
        if let Some(schema) = &self.schema {
            body["dataSchema"] = schema.clone();
        }
        if let Some(defaults) = &self.defaults {
            body["defaults"] = defaults.clone();
        }
        if !self.assets.is_empty() {
            body["assets"] = self
                .assets
                .iter()
                .map(|a| (a.name.clone(), json!(a.sha256)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        body
    }

    /// The file a field of the API's details names (`documents[1].template` → `lines.csv.j2`).
    pub fn file_of(&self, field: &str) -> Option<&str> {
        let index: usize = field
            .strip_prefix("documents[")?
            .split_once(']')?
            .0
            .parse()
            .ok()?;
        self.file.documents.get(index).map(|d| d.template.as_str())
    }

    /// `error` with the template file named beside each detail that points into one.
    pub fn annotate(&self, error: anyhow::Error) -> anyhow::Error {
        match error.downcast::<ApiError>() {
            Ok(mut api) => {
                for (field, _) in &mut api.details {
                    if let Some(file) = self.file_of(field) {
                        *field = format!("{field} ({file})");
                    }
                }
                api.into()
            }
            Err(other) => other,
        }
    }
}

/// Records the configuration's id and version in `docbundle.yaml`, keeping the rest of the
/// file (comments included) as it is.
pub fn record(dir: &Path, id: Uuid, version: i32) -> anyhow::Result<()> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path)?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, value) in [("version", version.to_string()), ("id", id.to_string())] {
        let line = format!("{key}: {value}");
        match lines.iter().position(|l| l.starts_with(&format!("{key}:"))) {
            Some(i) => lines[i] = line,
            None => {
                // After the leading comment, before the first key.
                let at = lines
                    .iter()
                    .position(|l| !l.starts_with('#') && !l.trim().is_empty())
                    .unwrap_or(lines.len());
                lines.insert(at, line);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

const INIT_FILE: &str = r#"# A docbundle configuration as code.
#   docbundle render .   renders it offline (the defaults below, or --seed seed.json)
#   docbundle push .     saves it as a new version
name: Invoices
description: An invoice as PDF, with its lines as CSV
# The JSON Schema every seed must satisfy (inline, or the name of a JSON file here).
schema:
  type: object
  required: [number, customer, currency, lines]
  properties:
    number: {type: string}
    customer:
      type: object
      required: [name, address]
      properties:
        name: {type: string}
        address: {type: string}
    currency: {type: string}
    lines:
      type: array
      items:
        type: object
        required: [description, quantity, unitPrice]
        properties:
          description: {type: string}
          quantity: {type: integer, minimum: 0}
          unitPrice: {type: number}
# The seed of renders and launches without one; checked against the schema.
defaults:
  number: INV-0001
  customer:
    name: Example Ltd
    address: 1 Example Street
  currency: EUR
  lines:
    - {description: Consulting, quantity: 3, unitPrice: 120}
    - {description: Travel, quantity: 1, unitPrice: 45.5}
# Inbound webhook event types that launch a run of this configuration.
triggers: []
# Also store the documents together as bundle.zip.
archive: false
documents:
  - name: invoice.pdf
    template: invoice.typ
  - name: lines.csv
    template: lines.csv.j2
"#;

const INIT_INVOICE: &str = r#"// A Typst template: https://typst.app/docs. Its inputs are three files and nothing else.
#let data = json("data.json")                   // the seed
#let bundle = json("bundle.json")               // {"seedHash": "…"}
#let configuration = json("configuration.json") // {"name": "…", "version": 3}

#set document(title: "Invoice " + data.number)
#set page(paper: "a4", margin: 2cm)
#set text(size: 10pt)

= Invoice #data.number
*#data.customer.name* \
#data.customer.address

#table(
  columns: (1fr, auto, auto, auto),
  align: (left, right, right, right),
  table.header([*Description*], [*Qty*], [*Unit price*], [*Amount*]),
  ..data.lines.map(l => (
    l.description, str(l.quantity),
    str(calc.round(l.unitPrice, digits: 2)),
    str(calc.round(l.quantity * l.unitPrice, digits: 2)),
  )).flatten()
)

*Total: #calc.round(data.lines.map(l => l.quantity * l.unitPrice).sum(default: 0), digits: 2) #data.currency*

#v(1fr)
#text(size: 7pt, fill: gray)[#configuration.name v#configuration.version · seed #bundle.seedHash]
"#;

const INIT_CSV: &str = r#"{#- A MiniJinja template: the seed is `data`. -#}
description,quantity,unitPrice
{% for l in data.lines %}
{{ l.description }},{{ l.quantity }},{{ l.unitPrice }}
{% endfor %}
"#;

pub fn init(dir: &Path, force: bool) -> anyhow::Result<()> {
    let files = [
        (FILE, INIT_FILE),
        ("invoice.typ", INIT_INVOICE),
        ("lines.csv.j2", INIT_CSV),
    ];
    if !force {
        if let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
            bail!(
                "{} exists: pick another folder, or --force to overwrite",
                dir.join(name).display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    println!(
        "wrote {} (docbundle.yaml, invoice.typ, lines.csv.j2)\n\
         next: docbundle render {0} -o out   then   docbundle push {0}",
        dir.display()
    );
    Ok(())
}

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

pub async fn push(client: &Client, dir: &Path, force: bool) -> anyhow::Result<()> {
    let (limits, _) = docbundle::config::render_settings_from_env()?;
    let folder = load(dir, limits.max_template_bytes)?;
    let body = folder.body();
    // The assets first: the configuration names them by hash. Bytes the API has already are
    // answered with their record.
    for asset in &folder.assets {
        client
            .send(Method::POST, &format!("/assets?name={}", asset.name), |r| {
                r.header("content-type", asset.kind.content_type())
                    .body(asset.bytes.clone())
            })
            .await
            .with_context(|| format!("cannot upload asset {}", asset.name))?;
    }
    let Some(id) = folder.file.id else {
        let response = client
            .send(Method::POST, "/configurations", |r| r.json(&body))
            .await
            .map_err(|e| folder.annotate(e))?;
        let created: Value = response.json().await?;
        let (id, version) = version_of(&created)?;
        record(dir, id, version)?;
        println!(
            "created configuration `{}` {id}: version {version}",
            folder.file.name
        );
        return Ok(());
    };
    let if_match = match (folder.file.version, force) {
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
    };
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
    let mut taken: HashSet<String> = HashSet::from([FILE.to_owned()]);
    let mut files = Vec::new();
    let mut files_bytes: Vec<(String, Vec<u8>)> = Vec::new();
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
        });
        files.push((file, template.to_owned()));
    }
    let mut assets = BTreeMap::new();
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
    let text = |key: &str| configuration[key].as_str().map(str::to_owned);
    let file = FolderFile {
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
        documents: entries,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let yaml = format!(
        "# Configuration {id}, pulled at version {version}. `docbundle push` saves a new version.\n{}",
        yaml_serde::to_string(&file)?
    );
    std::fs::write(dir.join(FILE), yaml)?;
    for (name, template) in &files {
        std::fs::write(dir.join(name), template)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    if !files_bytes.is_empty() {
        std::fs::create_dir_all(dir.join("assets"))?;
    }
    for (name, bytes) in &files_bytes {
        std::fs::write(dir.join(name), bytes)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    println!(
        "pulled `{}` {id} version {version} into {} ({} templates)",
        file.name,
        dir.display(),
        files.len()
    );
    Ok(())
}

pub async fn list_configurations(client: &Client, list: &ListArgs) -> anyhow::Result<()> {
    let items = client.list("/configurations", &[], list.limit).await?;
    for item in &items {
        if list.json {
            println!("{item}");
        } else {
            println!(
                "{}\tv{}\t{}\t{}\t{}",
                item["id"].as_str().unwrap_or(""),
                item["version"],
                item["status"].as_str().unwrap_or(""),
                item["updatedAt"].as_str().unwrap_or(""),
                item["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

pub async fn list_versions(client: &Client, id: Uuid, list: &ListArgs) -> anyhow::Result<()> {
    let items = client
        .list(&format!("/configurations/{id}/versions"), &[], list.limit)
        .await?;
    for item in &items {
        if list.json {
            println!("{item}");
        } else {
            println!(
                "v{}\t{}\t{}\t{} documents\t{}",
                item["version"],
                item["createdAt"].as_str().unwrap_or(""),
                item["createdBy"].as_str().unwrap_or(""),
                item["documents"].as_array().map_or(0, Vec::len),
                item["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("docbundle-folder-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_scaffold_loads_into_a_configuration_body() {
        let dir = scratch();
        init(&dir, false).unwrap();
        let folder = load(&dir, 256 * 1024).unwrap();
        let body = folder.body();
        assert_eq!(body["name"], "Invoices");
        assert_eq!(body["documents"][0]["format"], "pdf");
        assert_eq!(body["documents"][1]["format"], "csv");
        assert_eq!(body["documents"][0]["template"], INIT_INVOICE);
        assert_eq!(body["defaults"]["lines"][1]["unitPrice"], 45.5);
        assert_eq!(body["dataSchema"]["required"][0], "number");
        assert!(init(&dir, false).is_err(), "init does not overwrite");
    }

    #[test]
    fn recording_the_version_keeps_the_rest_of_the_file() {
        let dir = scratch();
        init(&dir, false).unwrap();
        let id = Uuid::new_v4();
        record(&dir, id, 1).unwrap();
        record(&dir, id, 2).unwrap();
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert!(text.starts_with("# A docbundle configuration as code."));
        assert_eq!(text.matches("version: ").count(), 1);
        let file: FolderFile = yaml_serde::from_str(&text).unwrap();
        assert_eq!((file.id, file.version), (Some(id), Some(2)));
    }

    #[test]
    fn templates_outside_the_folder_are_refused() {
        let dir = scratch();
        init(&dir, false).unwrap();
        let outside = dir
            .parent()
            .unwrap()
            .join(format!("secret-{}", Uuid::new_v4()));
        std::fs::write(&outside, "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, dir.join("link.typ")).unwrap();
        for path in [
            "../etc/passwd".to_owned(),
            "/etc/passwd".to_owned(),
            outside.display().to_string(),
            "link.typ".to_owned(),
            "a\0b".to_owned(),
        ] {
            let yaml = INIT_FILE.replace("template: invoice.typ", &format!("template: {path:?}"));
            std::fs::write(dir.join(FILE), yaml).unwrap();
            let error = format!("{:#}", load(&dir, 256 * 1024).unwrap_err());
            assert!(
                error.contains("inside the folder") || error.contains("leads out"),
                "{path}: {error}"
            );
        }
    }

    #[test]
    fn an_oversized_template_is_refused_without_reading_it_all() {
        let dir = scratch();
        init(&dir, false).unwrap();
        std::fs::write(dir.join("invoice.typ"), vec![b'a'; 300 * 1024]).unwrap();
        let error = format!("{:#}", load(&dir, 256 * 1024).unwrap_err());
        assert!(
            error.contains("template size limit (262144 bytes)"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let dir = scratch();
        init(&dir, false).unwrap();
        let yaml = INIT_FILE.replace("archive: false", "archiv: false");
        std::fs::write(dir.join(FILE), yaml).unwrap();
        let error = format!("{:#}", load(&dir, 256 * 1024).unwrap_err());
        assert!(error.contains("unknown field `archiv`"), "{error}");
        let line = INIT_FILE
            .lines()
            .position(|l| l == "archive: false")
            .unwrap()
            + 1;
        assert!(
            error.contains(&format!("at line {line} column 1")),
            "{error}"
        );
    }

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

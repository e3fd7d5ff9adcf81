//! Templates as code: a configuration as a folder. `docbundle.yaml` holds what the API's
//! configuration body holds (name, description, schema, defaults, triggers, archive, the
//! documents), each template in its own file beside it, and, once pushed or pulled, the
//! configuration's `id` and the `version` the folder was last in step with (the `If-Match` of
//! the next push).
//!
//! A folder is untrusted input like any request: template paths stay inside the folder
//! (no `..`, no absolute path, no symbolic link out of it) and files are read up to the
//! template size limit, never further.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::ApiError;

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
    /// `pdf`, `html`, `md`, `txt`, `csv`, `json` or `xml`; by default the name's extension.
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
    /// PDF documents: `{level: "B-B"|"B-T"|"B-LT", reason?, location?, contactInfo?}`, sent
    /// as it is (the API and the offline check judge it; docs/signatures.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Value>,
    /// PDF and xml documents: `{standard: "factur-x", profile, xml?}`, sent as it is
    /// (docs/einvoices.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einvoice: Option<Value>,
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
pub(crate) fn implied_format(name: &str) -> Option<&'static str> {
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
            "documents": self.documents.iter().zip(&self.file.documents).map(|((name, format, template, standard), listed)| {
                let mut doc = json!({"name": name, "format": format, "template": template});
                if let Some(standard) = standard {
                    doc["pdfStandard"] = json!(standard);
                }
                if let Some(signature) = &listed.signature {
                    doc["signature"] = signature.clone();
                }
                if let Some(einvoice) = &listed.einvoice {
                    doc["einvoice"] = einvoice.clone();
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scaffold::{init, INIT_FILE};

    /// A new empty folder under the temporary directory.
    pub(crate) fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("docbundle-folder-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
}

//! `docbundle init`: the starter configuration folder it writes, a `docbundle.yaml` with a
//! schema and defaults, a Typst invoice and a MiniJinja CSV of its lines.

use std::path::Path;

use anyhow::{bail, Context};

use crate::folder::FILE;

pub(crate) const INIT_FILE: &str = r#"# A docbundle configuration as code.
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

pub(crate) const INIT_INVOICE: &str = r#"// A Typst template: https://typst.app/docs. Its inputs are three files and nothing else.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folder::{load, tests::scratch};

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
}

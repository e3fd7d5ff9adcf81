//! JSON Schema: checking that a configuration's `dataSchema` is a schema, and that a seed
//! satisfies it, with per-field details. No remote `$ref` is ever fetched.

pub use jsonschema::Validator;
use serde_json::Value;

use crate::FieldError;

/// Compiles `schema`; the error explains why it is not a valid JSON Schema.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// Every way `instance` violates `validator`, each as a field under `root` (e.g.
/// `defaults.lines[2].quantity`).
pub fn violations(validator: &Validator, instance: &Value, root: &str) -> Vec<FieldError> {
    validator
        .iter_errors(instance)
        .take(50)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            FieldError::new(field_path(root, &pointer), e.to_string())
        })
        .collect()
}

/// `/lines/2/quantity` under `seed` → `seed.lines[2].quantity`.
pub fn field_path(root: &str, pointer: &str) -> String {
    let mut path = root.to_owned();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            path.push('.');
            path.push_str(&segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_point_at_fields() {
        let v = compile(&json!({
            "type": "object",
            "required": ["name"],
            "properties": {"lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}}}
        }))
        .unwrap();
        let errors = violations(&v, &json!({"lines": [{"qty": 1}, {"qty": "x"}]}), "seed");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"seed"), "{errors:?}");
        assert!(fields.contains(&"seed.lines[1].qty"), "{errors:?}");
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(compile(&json!({"type": "no-such-type"})).is_err());
        assert!(compile(&json!({"minimum": "ten"})).is_err());
        assert!(compile(&json!({"type": "object"})).is_ok());
    }
}

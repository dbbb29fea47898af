//! An ECS validator over the published `ecs_flat.yml`: every field must exist
//! (outside the `clawwatch` custom field set), with its type; the required
//! ones must be there; `event.kind/category/type/outcome` must use allowed
//! values, and each `event.type` must be one its categories expect.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

/// The custom field set clawwatch adds (its native note).
const CUSTOM: &str = "clawwatch";

struct Field {
    ty: String,
    /// For `object` fields with an `object_type`: the type of their values.
    object_type: Option<String>,
    allowed: Option<BTreeSet<String>>,
}

pub struct Ecs {
    fields: BTreeMap<String, Field>,
    required: Vec<String>,
    /// `event.category` value → the `event.type` values it expects.
    expected_types: BTreeMap<String, BTreeSet<String>>,
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

impl Ecs {
    pub fn load(path: &Path) -> Ecs {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let flat: BTreeMap<String, Value> =
            serde_yaml_ng::from_str(&text).expect("ecs_flat.yml parses");
        let mut fields = BTreeMap::new();
        let mut required = Vec::new();
        let mut expected_types = BTreeMap::new();
        for (name, def) in flat {
            if def["required"] == true {
                required.push(name.clone());
            }
            let allowed = def["allowed_values"].as_array().map(|values| {
                for v in values {
                    if let (Some(category), Some(types)) =
                        (v["name"].as_str(), v["expected_event_types"].as_array())
                    {
                        expected_types.insert(
                            category.to_string(),
                            types
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        );
                    }
                }
                values
                    .iter()
                    .filter_map(|v| v["name"].as_str())
                    .map(str::to_string)
                    .collect()
            });
            fields.insert(
                name,
                Field {
                    ty: def["type"].as_str().unwrap_or_default().to_string(),
                    object_type: def["object_type"].as_str().map(str::to_string),
                    allowed,
                },
            );
        }
        assert!(fields.len() > 1000, "ecs_flat.yml: {} fields", fields.len());
        Ecs {
            fields,
            required,
            expected_types,
        }
    }

    /// What is wrong with one document, each naming the field.
    pub fn violations(&self, doc: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let Some(map) = doc.as_object() else {
            return vec!["not a JSON object".into()];
        };
        for name in &self.required {
            if lookup(doc, name).is_none() {
                found.push(format!("{name}: required, missing"));
            }
        }
        for (key, value) in map {
            if key != CUSTOM {
                self.walk(key, value, &mut found);
            }
        }
        self.check_categorisation(doc, &mut found);
        found
    }

    fn walk(&self, name: &str, value: &Value, found: &mut Vec<String>) {
        match self.fields.get(name) {
            Some(field) => self.check_value(name, field, value, found),
            None => match value {
                // An intermediate object (`event`, `source`, `gen_ai.agent`).
                Value::Object(children)
                    if self
                        .fields
                        .keys()
                        .any(|f| f.starts_with(&format!("{name}."))) =>
                {
                    for (key, child) in children {
                        self.walk(&format!("{name}.{key}"), child, found);
                    }
                }
                _ => found.push(format!("{name}: not a field of ECS")),
            },
        }
    }

    fn check_value(&self, name: &str, field: &Field, value: &Value, found: &mut Vec<String>) {
        if field.ty == "object" {
            let Some(children) = value.as_object() else {
                found.push(format!("{name}: an object expected, found {value}"));
                return;
            };
            if let Some(ty) = &field.object_type {
                for (key, child) in children {
                    if !type_fits(ty, child) {
                        found.push(format!("{name}.{key}: {ty} expected, found {child}"));
                    }
                }
            }
            return;
        }
        // Any ECS field may hold an array of its type.
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in items {
            if !type_fits(&field.ty, item) {
                found.push(format!("{name}: {} expected, found {item}", field.ty));
            }
            if let (Some(allowed), Some(s)) = (&field.allowed, item.as_str()) {
                if !allowed.contains(s) {
                    found.push(format!("{name}: `{s}` is not an allowed value"));
                }
            }
        }
    }

    fn check_categorisation(&self, doc: &Value, found: &mut Vec<String>) {
        let categories = lookup(doc, "event.category")
            .map(strings)
            .unwrap_or_default();
        let types = lookup(doc, "event.type").map(strings).unwrap_or_default();
        if !categories.is_empty() && types.is_empty() {
            found.push("event.type: missing beside event.category".into());
        }
        for t in &types {
            if !categories.is_empty()
                && !categories
                    .iter()
                    .any(|c| self.expected_types.get(*c).is_some_and(|e| e.contains(*t)))
            {
                found.push(format!(
                    "event.type: `{t}` is expected by none of the categories {categories:?}"
                ));
            }
        }
        for c in &categories {
            if let Some(expected) = self.expected_types.get(*c) {
                if !types.iter().any(|t| expected.contains(*t)) {
                    found.push(format!(
                        "event.category: `{c}` with none of its expected types (types {types:?})"
                    ));
                }
            }
        }
    }
}

/// A dotted name in a document of nested objects.
fn lookup<'v>(doc: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = doc.get(name) {
        return Some(v);
    }
    let (head, rest) = name.split_once('.')?;
    lookup(doc.get(head)?, rest)
}

fn type_fits(ty: &str, v: &Value) -> bool {
    match ty {
        "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => v.is_string(),
        "long" | "integer" | "short" | "byte" => v.is_i64() || v.is_u64(),
        "unsigned_long" => v.is_u64(),
        "float" | "half_float" | "scaled_float" | "double" => v.is_number(),
        "boolean" => v.is_boolean(),
        "date" => v
            .as_str()
            .is_some_and(|s| clawwatch_plugin::time::Timestamp::parse_rfc3339(s).is_some()),
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "flattened" => true,
        "nested" => v.is_array() || v.is_object(),
        "geo_point" => v.is_object() || v.is_string(),
        _ => false,
    }
}

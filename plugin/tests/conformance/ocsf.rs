//! An OCSF validator over the published schema (`dictionary.json`, the class
//! under `events/`, `objects/`, `profiles/`): an event's attributes are its
//! class's (following `extends` to `base_event`) and those of the profiles it
//! lists in `metadata.profiles`; each has its dictionary type, objects are
//! checked the same way all the way down, `required` attributes must be
//! present and enumerated `_id`s must use listed values. The `datetime`
//! profile adds an `X_dt` (RFC 3339 text) beside every timestamp `X`.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
struct Attr {
    requirement: Option<String>,
    /// An enum the class or object narrows the dictionary's to.
    enum_keys: Option<BTreeSet<String>>,
    /// A type the class or object gives instead of the dictionary's.
    ty: Option<String>,
    /// The profile the attribute comes with, when it is not the class's own.
    profile: Option<String>,
}

type Attrs = BTreeMap<String, Attr>;

pub struct Ocsf {
    root: PathBuf,
    dictionary: Map<String, Value>,
    /// Scalar type → its base (`port_t` → `integer_t`).
    base_types: BTreeMap<String, Option<String>>,
    objects: BTreeMap<String, Attrs>,
    class: Attrs,
    pub class_uid: u64,
    pub version: String,
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn enum_keys(def: &Value) -> Option<BTreeSet<String>> {
    def["enum"].as_object().map(|e| e.keys().cloned().collect())
}

impl Ocsf {
    /// The schema at `root`, for the event class defined in `class_file` (relative to `events/`).
    pub fn load(root: &Path, class_file: &str) -> Ocsf {
        let dict = read(&root.join("dictionary.json"));
        let base_types = dict["types"]["attributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["type"].as_str().map(str::to_string)))
            .collect();
        let mut ocsf = Ocsf {
            root: root.to_path_buf(),
            dictionary: dict["attributes"].as_object().unwrap().clone(),
            base_types,
            objects: BTreeMap::new(),
            class: Attrs::new(),
            class_uid: 0,
            version: read(&root.join("version.json"))["version"]
                .as_str()
                .unwrap()
                .to_string(),
        };
        let mut objects = BTreeMap::new();
        for entry in std::fs::read_dir(root.join("objects")).unwrap() {
            let path = entry.unwrap().path();
            let def = read(&path);
            objects.insert(def["name"].as_str().unwrap().to_string(), def);
        }
        let names: Vec<String> = objects.keys().cloned().collect();
        for name in names {
            let attrs = ocsf.resolve(&objects, &name, &|defs, n| defs.get(n).cloned());
            ocsf.objects.insert(name, attrs);
        }
        // Events: the class and its `extends` chain, found by name under events/.
        let mut events = BTreeMap::new();
        collect_events(&root.join("events"), &mut events);
        let class = read(&root.join("events").join(class_file));
        let category_uid = read(&root.join("categories.json"))["attributes"]
            [class["category"].as_str().unwrap()]["uid"]
            .as_u64()
            .unwrap();
        ocsf.class_uid = category_uid * 1000 + class["uid"].as_u64().unwrap();
        ocsf.class = ocsf.resolve(&events, class["name"].as_str().unwrap(), &|defs, n| {
            defs.get(n).cloned()
        });
        ocsf
    }

    /// A definition's attributes merged over those of what it `extends`, its
    /// `$include`s expanded (a profile's attributes tagged with the profile).
    fn resolve(
        &self,
        defs: &BTreeMap<String, Value>,
        name: &str,
        get: &dyn Fn(&BTreeMap<String, Value>, &str) -> Option<Value>,
    ) -> Attrs {
        let Some(def) = get(defs, name) else {
            return Attrs::new();
        };
        let mut attrs = match def["extends"].as_str() {
            Some(parent) => self.resolve(defs, parent, get),
            None => Attrs::new(),
        };
        let own = def["attributes"].as_object().cloned().unwrap_or_default();
        for include in own
            .get("$include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let file = include.as_str().unwrap();
            let included = read(&self.root.join(file));
            let profile = file
                .starts_with("profiles/")
                .then(|| included["name"].as_str().unwrap().to_string());
            for (k, v) in included["attributes"].as_object().into_iter().flatten() {
                merge(&mut attrs, k, v, profile.clone());
            }
        }
        for (k, v) in &own {
            if k != "$include" {
                merge(&mut attrs, k, v, None);
            }
        }
        attrs
    }

    /// What is wrong with one event, each naming the attribute's path.
    pub fn violations(&self, event: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let profiles: BTreeSet<String> = event["metadata"]["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        for p in &profiles {
            if !self
                .root
                .join("profiles")
                .join(format!("{p}.json"))
                .is_file()
            {
                found.push(format!(
                    "metadata.profiles: no profile `{p}` in OCSF {}",
                    self.version
                ));
            }
        }
        // The generic enums of these (base_event's) are generated per class:
        // checked here instead.
        if event["class_uid"].as_u64() != Some(self.class_uid) {
            found.push(format!("class_uid: {} expected", self.class_uid));
        }
        if event["category_uid"].as_u64() != Some(self.class_uid / 1000) {
            found.push(format!("category_uid: {} expected", self.class_uid / 1000));
        }
        if let (Some(class), Some(activity), Some(type_uid)) = (
            event["class_uid"].as_u64(),
            event["activity_id"].as_u64(),
            event["type_uid"].as_u64(),
        ) {
            if type_uid != class * 100 + activity {
                found.push(format!(
                    "type_uid: {type_uid} is not class_uid * 100 + activity_id"
                ));
            }
        }
        self.check_object(event, &self.class, "", &profiles, &mut found);
        found
    }

    fn check_object(
        &self,
        value: &Value,
        attrs: &Attrs,
        path: &str,
        profiles: &BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        let Some(map) = value.as_object() else {
            found.push(format!("{path}: an object expected, found {value}"));
            return;
        };
        let applies = |a: &Attr| a.profile.as_ref().is_none_or(|p| profiles.contains(p));
        for (name, attr) in attrs {
            if attr.requirement.as_deref() == Some("required")
                && applies(attr)
                && !map.contains_key(name)
            {
                found.push(format!("{path}{name}: required, missing"));
            }
        }
        for (key, child) in map {
            let at = format!("{path}{key}");
            if let Some(attr) = attrs.get(key).filter(|a| applies(a)) {
                self.check_attribute(key, attr, child, &at, profiles, found);
                continue;
            }
            // The datetime profile's `X_dt` beside a timestamp `X`.
            let timestamp_sibling = key
                .strip_suffix("_dt")
                .and_then(|base| attrs.get(base))
                .is_some_and(|a| {
                    self.type_of(key.strip_suffix("_dt").unwrap(), a).as_deref()
                        == Some("timestamp_t")
                });
            if timestamp_sibling {
                if !profiles.contains("datetime") {
                    found.push(format!(
                        "{at}: needs the datetime profile in metadata.profiles"
                    ));
                } else if !child
                    .as_str()
                    .is_some_and(|s| clawwatch_plugin::time::Timestamp::parse_rfc3339(s).is_some())
                {
                    found.push(format!("{at}: datetime_t expected, found {child}"));
                }
                continue;
            }
            match attrs.get(key) {
                Some(a) => found.push(format!(
                    "{at}: needs the {} profile in metadata.profiles",
                    a.profile.as_deref().unwrap_or("?")
                )),
                None => found.push(format!(
                    "{at}: not an attribute here in OCSF {}",
                    self.version
                )),
            }
        }
    }

    fn type_of(&self, name: &str, attr: &Attr) -> Option<String> {
        attr.ty.clone().or_else(|| {
            self.dictionary.get(name)?["type"]
                .as_str()
                .map(str::to_string)
        })
    }

    fn check_attribute(
        &self,
        name: &str,
        attr: &Attr,
        value: &Value,
        at: &str,
        profiles: &BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        let Some(dict) = self.dictionary.get(name) else {
            found.push(format!("{at}: `{name}` is not in the dictionary"));
            return;
        };
        let ty = self.type_of(name, attr).unwrap_or_default();
        let items: Vec<&Value> = if dict["is_array"] == true {
            match value.as_array() {
                Some(items) => items.iter().collect(),
                None => {
                    found.push(format!("{at}: an array expected, found {value}"));
                    return;
                }
            }
        } else {
            vec![value]
        };
        let generated = matches!(name, "class_uid" | "category_uid" | "type_uid") && at == name;
        let allowed = (!generated)
            .then(|| attr.enum_keys.clone().or_else(|| enum_keys(dict)))
            .flatten();
        for (i, item) in items.iter().enumerate() {
            let at = if dict["is_array"] == true {
                format!("{at}[{i}]")
            } else {
                at.to_string()
            };
            if ty == "object" || ty == "json_t" {
                continue; // free-form by definition (`unmapped`, JSON values)
            }
            if let Some(object) = self.objects.get(&ty) {
                self.check_object(item, object, &format!("{at}."), profiles, found);
                continue;
            }
            if !self.scalar_fits(&ty, item) {
                found.push(format!("{at}: {ty} expected, found {item}"));
            }
            if let Some(allowed) = &allowed {
                let key = match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !allowed.contains(&key) {
                    found.push(format!(
                        "{at}: {key} is not one of its enum values {allowed:?}"
                    ));
                }
            }
        }
    }

    fn scalar_fits(&self, ty: &str, v: &Value) -> bool {
        match ty {
            "string_t" => v.is_string(),
            "integer_t" | "long_t" => v.is_i64() || v.is_u64(),
            "float_t" => v.is_number(),
            "boolean_t" => v.is_boolean(),
            "ip_t" => v
                .as_str()
                .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
            "datetime_t" => v
                .as_str()
                .is_some_and(|s| clawwatch_plugin::time::Timestamp::parse_rfc3339(s).is_some()),
            other => match self.base_types.get(other) {
                Some(Some(base)) => self.scalar_fits(base, v),
                _ => false,
            },
        }
    }
}

fn merge(attrs: &mut Attrs, name: &str, def: &Value, profile: Option<String>) {
    let entry = attrs.entry(name.to_string()).or_insert(Attr {
        requirement: None,
        enum_keys: None,
        ty: None,
        profile: profile.clone(),
    });
    if let Some(r) = def["requirement"].as_str() {
        entry.requirement = Some(r.to_string());
    }
    if let Some(e) = enum_keys(def) {
        entry.enum_keys = Some(e);
    }
    if let Some(t) = def["type"].as_str() {
        entry.ty = Some(t.to_string());
    }
    // A class's own definition of a profile's attribute makes it the class's.
    if profile.is_none() {
        entry.profile = None;
    }
}

fn collect_events(dir: &Path, into: &mut BTreeMap<String, Value>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_events(&path, into);
        } else if path.extension().is_some_and(|e| e == "json") {
            let def = read(&path);
            if let Some(name) = def["name"].as_str() {
                into.insert(name.to_string(), def);
            }
        }
    }
}

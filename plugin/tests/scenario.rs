//! The sample scenario through the native engine. The same snapshot is asserted
//! through the WebAssembly component by the host's end-to-end test, which is
//! what proves the two builds agree.

use clawwatch_plugin::Engine;

const POLICY: &str = include_str!("../../testdata/policy.toml");
const RECORDS: &[u8] = include_bytes!("../../testdata/scenario/records.ndjson");

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/snapshots"
    ));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn scenario_enriched_by_the_native_engine() {
    let mut engine = Engine::new(POLICY).expect("bundled policy loads");
    let mut out = Vec::new();
    // Several batch sizes must give the same output: batching is invisible.
    for chunk in RECORDS
        .split_inclusive(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .chunks(37)
    {
        engine.process_ndjson(&chunk.concat(), &mut out);
    }
    let text = String::from_utf8(out).expect("output is UTF-8 whatever the input");
    let per_input = text
        .lines()
        .filter(|l| {
            !l.starts_with("{\"clawwatch\":{\"stream\":\"incident\"")
                && !l.starts_with("{\"clawwatch\":{\"stream\":\"audit\"")
        })
        .count();
    assert_eq!(
        per_input,
        RECORDS.split(|b| *b == b'\n').count() - 1,
        "one line out per line in, besides incident records"
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("scenario_enriched", text));
}

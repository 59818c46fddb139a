//! The README's CLI reference is generated from clap; this test fails when it drifts.
//! `make readme` (UPDATE_README=1) rewrites it.

const START: &str = "<!-- cli-reference:start -->\n";
const END: &str = "<!-- cli-reference:end -->";

#[test]
fn cli_reference_in_readme_matches_clap() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (head, rest) = readme.split_once(START).expect("README has the cli-reference start marker");
    let (current, tail) = rest.split_once(END).expect("README has the cli-reference end marker");
    let generated = otel_injector::cli::reference_markdown();
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, format!("{head}{START}{generated}{END}{tail}")).expect("write README.md");
        return;
    }
    assert!(current == generated, "README.md's CLI reference is stale: run `make readme`");
}

//! The Python tools the tests drive (moto, schemathesis, kubernetes-validate), run from the
//! project's own virtual environment that `./scripts/test.sh` fills from `tests/requirements.txt`.

use std::{path::PathBuf, process::Command};

/// The virtual environment: `MCP_TEST_VENV` as the test script exports it, else its default place.
fn venv() -> PathBuf {
    std::env::var_os("MCP_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("target/test-venv")
        })
}

/// `python -m <module>` in the test environment; panics with the way to get it when it is missing.
pub fn python_module(module: &str) -> Command {
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: run the tests with ./scripts/test.sh, which creates it and installs \
         the Python tools from tests/requirements.txt",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.args(["-m", module]);
    cmd
}

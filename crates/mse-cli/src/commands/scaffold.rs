//! `mse scaffold NAME`: a new app folder that validates and passes its tests.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::commands::absolute;
use crate::exit::{CmdResult, Failure};

/// Arguments of `mse scaffold`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the app; also the folder created in the current directory
    name: String,
}

/// The files of a new app: path relative to the app folder, and content.
fn files(name: &str) -> Vec<(&'static str, String)> {
    let toml_name = toml::Value::String(name.to_string()).to_string();
    vec![
        (
            "mse.toml",
            include_str!("../../templates/scaffold/mse.toml")
                .replace("{name}", &toml_name)
                .replace("{docker}", mse_config::DEFAULT_DOCKER_IMAGE),
        ),
        (
            "mse_src/app.py",
            include_str!("../../templates/scaffold/mse_src/app.py").to_string(),
        ),
        (
            "mse_src/.mseignore",
            include_str!("../../templates/scaffold/mse_src/mseignore").to_string(),
        ),
        (
            "tests/conftest.py",
            include_str!("../../templates/scaffold/tests/conftest.py").to_string(),
        ),
        (
            "tests/test_app.py",
            include_str!("../../templates/scaffold/tests/test_app.py").to_string(),
        ),
        (
            "README.md",
            include_str!("../../templates/scaffold/README.md").replace("{name}", name),
        ),
    ]
}

fn check_folder_name(name: &str) -> Result<(), Failure> {
    mse_config::fields::check_name("the app name", name).map_err(Failure::Invalid)?;
    let plain = Path::new(name)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        && !name.contains(['/', '\\']);
    if !plain {
        return Err(Failure::Invalid(format!(
            "`{name}` must be a plain folder name (no `/`, `.` or `..`); run `mse scaffold` from the parent folder"
        )));
    }
    Ok(())
}

/// Runs `mse scaffold`.
pub fn run(args: Args) -> CmdResult {
    check_folder_name(&args.name)?;
    let dir = absolute(Path::new(&args.name))?;
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            return Err(Failure::Invalid(format!(
                "{} already exists and is not empty; choose another name or remove it",
                dir.display()
            )));
        }
    }
    let files = files(&args.name);
    write_all(&dir, &files).with_context(|| format!("cannot create {}", dir.display()))?;

    outln!("Created app `{}` in {}:", args.name, dir.display())?;
    let described = [
        ("mse.toml", "configuration"),
        ("mse_src/app.py", "the Flask application"),
        (
            "mse_src/.mseignore",
            "files left out of the encrypted package",
        ),
        ("tests/", "pytest tests of the app"),
        ("README.md", "next steps"),
    ];
    for (path, what) in described {
        outln!("  {:<32} {what}", format!("{}/{path}", args.name))?;
    }
    outln!()?;
    outln!("Next:")?;
    outln!("  cd {}", args.name)?;
    outln!("  mse validate          # check mse.toml")?;
    outln!("  mse test              # run the app on http://localhost:5000")?;
    outln!("  pytest tests          # test the app (needs flask and pytest)")?;
    outln!("  mse login --url URL   # once: the platform to deploy to (URL and token from its operator)")?;
    outln!(
        "  mse deploy            # encrypt, upload, verify the node, run the app and print its URL"
    )?;
    Ok(())
}

/// Writes every file, or nothing: on failure the partly written folder is removed.
fn write_all(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    let existed = dir.exists();
    let result = (|| {
        for (relative, content) in files {
            let path: PathBuf = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)?;
        }
        Ok(())
    })();
    if result.is_err() {
        if existed {
            for entry in std::fs::read_dir(dir)?.flatten() {
                let _ = std::fs::remove_dir_all(entry.path())
                    .or_else(|_| std::fs::remove_file(entry.path()));
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffold_names_must_be_plain_folder_names() {
        assert!(check_folder_name("helloworld").is_ok());
        assert!(check_folder_name("../x").is_err());
        assert!(check_folder_name("a/b").is_err());
        assert!(check_folder_name("..").is_err());
        assert!(check_folder_name("").is_err());
    }

    #[test]
    fn scaffold_quotes_the_name_as_a_toml_string() {
        let files = files("my \"app\"");
        let toml = &files[0].1;
        assert!(
            toml.starts_with("name = 'my \"app\"'\n")
                || toml.starts_with("name = \"my \\\"app\\\"\"\n"),
            "{toml}"
        );
    }
}

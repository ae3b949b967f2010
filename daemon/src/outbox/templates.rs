//! Message templates: the built-in French ones (connection details, absence justification,
//! report) and the school's own in `templates_dir`, which override a built-in of the same name.
//! Rendered with minijinja in strict mode: a variable the template uses but the row lacks is an
//! error, never an empty hole in a letter to a family.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;

const BUILT_IN: &[(&str, &str)] = &[
    (
        "identifiants",
        include_str!("../../templates/identifiants.toml"),
    ),
    ("absence", include_str!("../../templates/absence.toml")),
    ("bilan", include_str!("../../templates/bilan.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// Every variable a row must give.
    pub variables: Vec<String>,
    /// Each row comes with its own attachment (the report's PDF).
    #[serde(default)]
    pub attachment: bool,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// A rendered message.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Template {
    pub fn parse(name: &str, source: &str) -> Result<Template, String> {
        let mut t: Template =
            toml::from_str(source).map_err(|e| format!("template {name}: {e}"))?;
        t.name = name.to_owned();
        // Every variable the text uses must be declared, so that rows can be checked up front.
        let env = environment();
        for (part, src) in t.parts() {
            let tmpl = env
                .template_from_str(src)
                .map_err(|e| format!("template {name}, {part}: {e}"))?;
            if let Some(undeclared) = tmpl
                .undeclared_variables(false)
                .into_iter()
                .find(|v| !t.variables.contains(v))
            {
                return Err(format!(
                    "template {name}, {part}: `{undeclared}` is used but not in `variables`"
                ));
            }
        }
        Ok(t)
    }

    fn parts(&self) -> Vec<(&'static str, &str)> {
        let mut parts = vec![
            ("subject", self.subject.as_str()),
            ("text", self.text.as_str()),
        ];
        if let Some(html) = &self.html {
            parts.push(("html", html.as_str()));
        }
        parts
    }

    /// Renders with `row`, which must give every declared variable and nothing else, apart
    /// from the keys in `ignored` (the address, the attachment).
    pub fn render(
        &self,
        row: &HashMap<String, String>,
        ignored: &[&str],
    ) -> Result<Rendered, String> {
        if let Some(unknown) = row
            .keys()
            .find(|k| !self.variables.contains(k) && !ignored.contains(&k.as_str()))
        {
            return Err(format!(
                "`{unknown}` is not a variable of template {} ({})",
                self.name,
                self.variables.join(", ")
            ));
        }
        let mut context = BTreeMap::new();
        for v in &self.variables {
            match row.get(v).map(|s| s.trim()) {
                Some(value) if !value.is_empty() => {
                    context.insert(v.clone(), minijinja::Value::from(value));
                }
                _ => return Err(format!("missing variable `{v}`")),
            }
        }
        let env = environment();
        let render = |name: &str, src: &str| {
            env.template_from_named_str(name, src)
                .and_then(|t| t.render(minijinja::Value::from(context.clone())))
                .map_err(|e| format!("template {}: {e}", self.name))
        };
        Ok(Rendered {
            subject: render("subject.txt", &self.subject)?.trim().to_owned(),
            text: render("text.txt", self.text.trim_start())?,
            html: self
                .html
                .as_deref()
                .map(|h| render("text.html", h))
                .transpose()?,
        })
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Built-ins, then the school's `*.toml` in `dir` (a missing folder is fine; a broken template is
/// skipped with a warning so that one typo does not take the others down).
pub fn load(dir: &Path) -> BTreeMap<String, Template> {
    let mut all = BTreeMap::new();
    for (name, source) in BUILT_IN {
        let t = Template::parse(name, source).expect("built-in templates are valid");
        all.insert(name.to_string(), t);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "toml"))
        else {
            continue;
        };
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|src| Template::parse(name, &src))
        {
            Ok(t) => {
                all.insert(name.to_owned(), t);
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "template skipped"),
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn built_ins_render_in_french() {
        let all = load(Path::new("/nonexistent"));
        let r = all["identifiants"]
            .render(
                &row(&[
                    ("eleve", "Léa Martin"),
                    ("url", "https://ent.example.fr"),
                    ("identifiant", "lmartin"),
                    ("mot_de_passe", "Xy7!pq"),
                    ("email", "x@y.fr"),
                ]),
                &["email"],
            )
            .unwrap();
        assert_eq!(r.subject, "Identifiants de connexion de Léa Martin");
        assert!(
            r.text.contains("lmartin")
                && r.text.contains("Xy7!pq")
                && r.text.contains("première connexion")
        );
        let r = all["absence"]
            .render(
                &row(&[
                    ("eleve", "Tom"),
                    ("classe", "CM2"),
                    ("dates", "12 et 13 mars"),
                    ("contact", "vs@ecole.fr"),
                ]),
                &[],
            )
            .unwrap();
        assert!(
            r.subject.contains("CM2")
                && r.text.contains("12 et 13 mars")
                && r.text.contains("justificatif")
        );
        let bilan = &all["bilan"];
        assert!(bilan.attachment);
        let r = bilan
            .render(
                &row(&[("eleve", "<Tom>"), ("periode", "du 1er trimestre")]),
                &[],
            )
            .unwrap();
        assert!(r.html.unwrap().contains("&lt;Tom&gt;"), "HTML is escaped");
        assert!(r.text.contains("<Tom>"), "text is not");
    }

    #[test]
    fn missing_and_unknown_variables_are_errors() {
        let all = load(Path::new("/nonexistent"));
        let t = &all["absence"];
        let e = t
            .render(
                &row(&[("eleve", "Tom"), ("classe", "CM2"), ("dates", "12 mars")]),
                &[],
            )
            .err()
            .unwrap();
        assert!(e.contains("missing variable `contact`"), "{e}");
        let e = t
            .render(
                &row(&[
                    ("eleve", "Tom"),
                    ("classe", " "),
                    ("dates", "x"),
                    ("contact", "y"),
                ]),
                &[],
            )
            .err()
            .unwrap();
        assert!(e.contains("classe"), "{e}");
        let e = t
            .render(
                &row(&[
                    ("eleve", "Tom"),
                    ("classe", "CM2"),
                    ("dates", "x"),
                    ("contact", "y"),
                    ("age", "9"),
                ]),
                &[],
            )
            .err()
            .unwrap();
        assert!(e.contains("`age`"), "{e}");
    }

    #[test]
    fn school_templates_override_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sortie.toml"),
            "description = \"Sortie\"\nvariables = [\"eleve\"]\nsubject = \"Sortie de {{ eleve }}\"\ntext = \"Bonjour {{ eleve }}\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("absence.toml"),
            "description = \"Absence (école)\"\nvariables = [\"eleve\"]\nsubject = \"Absence {{ eleve }}\"\ntext = \"x\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("casse.toml"),
            "description = \"x\"\nvariables = []\nsubject = \"{{ eleve }}\"\ntext = \"x\"\n",
        )
        .unwrap();
        let all = load(dir.path());
        assert_eq!(all["absence"].description, "Absence (école)");
        assert!(all.contains_key("sortie"));
        assert!(!all.contains_key("casse"), "undeclared variable: skipped");
        assert!(all.contains_key("bilan"));
    }
}

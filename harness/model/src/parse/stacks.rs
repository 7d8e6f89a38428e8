//! `[[stacks]]`: Compose files deployed as swarm stacks. The files are read here only as
//! far as the checks need (that each parses, and which services it declares); what they
//! mean is the docker CLI's business, which deploys them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::de::DeValue;

use super::raw::RawStack;
use super::stack_placement::ComposePlacement;
use super::{Parser, S, span_of};
use crate::diag::{Problem, did_you_mean};
use crate::{ComposeBuild, ResolveImage, Stack};

/// Compose files larger than this are refused (they are read whole to validate).
const MAX_COMPOSE_BYTES: u64 = 1024 * 1024;

impl Parser {
    /// `source` is the scenario file's path: Compose files are relative to its folder.
    pub(crate) fn stacks(&mut self, value: Option<&S<DeValue<'_>>>, source: &str) -> Vec<Stack> {
        let raw: Vec<S<RawStack>> = self.elements(
            "stacks",
            value,
            "stack keys: name, files (Compose files, relative to the scenario), env (a table of strings), resolve_image",
        );
        let folder = Path::new(source).parent().unwrap_or(Path::new("")).to_path_buf();
        let mut seen = BTreeSet::new();
        raw.into_iter()
            .map(|s| {
                let s = s.into_inner();
                // The CLI names every object `<stack>_<name>`: a stack name is a prefix of
                // service, network and DNS names.
                self.name_rule(&s.name, "stack name", 40, false, true);
                self.duplicate(&mut seen, &s.name, "stack");
                if s.files.get_ref().is_empty() {
                    self.push(
                        Problem::new(
                            format!("stack `{}` has no Compose file", s.name.get_ref()),
                            span_of(&s.files),
                        )
                        .help("list its files, e.g. `files = [\"app.yml\"]` (several are merged in order)"),
                    );
                }
                let mut services: Vec<String> = Vec::new();
                let mut builds: Vec<ComposeBuild> = Vec::new();
                let (mut secret_files, mut config_files) = (BTreeMap::new(), BTreeMap::new());
                let mut placements: BTreeMap<String, ComposePlacement> = BTreeMap::new();
                let mut files = Vec::new();
                let mut all_read = true;
                for f in s.files.get_ref() {
                    let path = folder.join(f.get_ref());
                    match self.compose_services(f, &path) {
                        Some(read) => {
                            for name in read.services {
                                if !services.contains(&name) {
                                    services.push(name);
                                }
                            }
                            // A later file's `build` of a service replaces an earlier one.
                            for b in read.builds {
                                builds.retain(|x| x.service != b.service);
                                builds.push(b);
                            }
                            for p in read.placements {
                                match placements.get_mut(&p.service) {
                                    Some(earlier) => earlier.merge(p),
                                    None => {
                                        placements.insert(p.service.clone(), p);
                                    }
                                }
                            }
                            // The CLI resolves `file:` against the first file's folder.
                            let base = files.first().unwrap_or(&path).parent().unwrap_or(Path::new(""));
                            for (name, file) in read.secret_files {
                                secret_files.insert(name, base.join(file));
                            }
                            for (name, file) in read.config_files {
                                config_files.insert(name, base.join(file));
                            }
                        }
                        None => all_read = false,
                    }
                    files.push(path);
                }
                let images = self.stack_images(&s.images);
                if all_read && services.is_empty() && !s.files.get_ref().is_empty() {
                    self.push(
                        Problem::new(
                            format!("stack `{}` declares no services", s.name.get_ref()),
                            span_of(&s.files),
                        )
                        .help("a Compose file for a stack needs a `services:` mapping with at least one service"),
                    );
                }
                let env = self.stack_env(&s.env);
                let placements = (placements.into_iter())
                    .map(|(name, p)| {
                        let service = p.service(s.name.get_ref(), &env);
                        (name, service)
                    })
                    .collect();
                Stack {
                    name: s.name.into_inner(),
                    files,
                    env,
                    services,
                    resolve_image: self.resolve_image(s.resolve_image.as_ref()),
                    images,
                    builds,
                    secret_files,
                    config_files,
                    placements,
                }
            })
            .collect()
    }

    /// The service names one Compose file declares; each problem (unreadable, not YAML,
    /// no `services`) recorded at the file's entry in the scenario.
    pub(crate) fn compose_services(&mut self, entry: &S<String>, path: &Path) -> Option<ComposeFile> {
        let shown = entry.get_ref();
        let text = match read_compose(path) {
            Ok(t) => t,
            Err(e) => {
                self.push(
                    Problem::new(format!("cannot read Compose file `{shown}`: {e}"), span_of(entry))
                        .label("from this scenario's folder")
                        .help(format!(
                            "the path is relative to the scenario file; looked at {}",
                            path.display()
                        )),
                );
                return None;
            }
        };
        let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!("{shown}:{}:{}: ", l.line(), l.column()))
                    .unwrap_or_else(|| format!("{shown}: "));
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                self.push(
                    Problem::new(format!("{at}{message}"), span_of(entry))
                        .label("this Compose file does not parse")
                        .help(
                            "fix the YAML at that line and column (`docker stack config -c FILE` shows the CLI's view)",
                        ),
                );
                return None;
            }
        };
        let (secret_files, config_files) = (file_sources(&doc, "secrets"), file_sources(&doc, "configs"));
        let Some(services) = doc.get("services") else {
            // An override file may add only networks or secrets; the merged stack must
            // still have services (the caller checks).
            return Some(ComposeFile {
                secret_files,
                config_files,
                ..ComposeFile::default()
            });
        };
        match services.as_mapping() {
            Some(m) => {
                let mut read = ComposeFile {
                    secret_files,
                    config_files,
                    ..ComposeFile::default()
                };
                let folder = path.parent().unwrap_or(Path::new(""));
                for (k, v) in m {
                    let Some(name) = k.as_str() else { continue };
                    read.services.push(name.to_string());
                    read.placements.push(ComposePlacement::read(name, v));
                    if let Some(build) = v.get("build") {
                        match compose_build(name, v, build, folder) {
                            Ok(b) => read.builds.push(b),
                            Err(why) => self.push(
                                Problem::new(format!("service `{name}` in `{shown}`: {why}"), span_of(entry))
                                    .help("give it `image: NAME:TAG` (the tag swarm-e2e builds it as and the nodes run) and `build: DIR` or `build: {context: DIR, dockerfile: FILE, args: {...}}`"),
                            ),
                        }
                    }
                }
                Some(read)
            }
            None => {
                self.push(
                    Problem::new(format!("`services` in `{shown}` is not a mapping"), span_of(entry))
                        .help("write each service as `NAME:` under `services:`, its keys indented below"),
                );
                None
            }
        }
    }

    fn stack_images(&mut self, raw: &[S<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for i in raw {
            let image = i.get_ref();
            if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c == '$') {
                self.push(
                    Problem::new(format!("`{image}` is not an image reference"), span_of(i))
                        .help("name an image on the host engine as `docker images` shows it, e.g. \"myapp:1.2\""),
                );
                continue;
            }
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
        out
    }

    fn stack_env(&mut self, raw: &BTreeMap<S<String>, S<String>>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (k, v) in raw {
            let name = k.get_ref();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.push(
                    Problem::new(format!("`{name}` is not an environment variable name"), span_of(k)).help(
                        "letters, digits and `_`, not starting with a digit: what `${NAME}` in a Compose file can name",
                    ),
                );
                continue;
            }
            env.insert(name.clone(), v.get_ref().clone());
        }
        env
    }

    fn resolve_image(&mut self, raw: Option<&S<String>>) -> ResolveImage {
        let Some(r) = raw else {
            return ResolveImage::Never;
        };
        match r.get_ref().as_str() {
            "never" => ResolveImage::Never,
            "changed" => ResolveImage::Changed,
            "always" => ResolveImage::Always,
            other => {
                let help = match did_you_mean(other, ["never", "changed", "always"]) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "`never` (the default: no registry is asked), `changed` or `always`".into(),
                };
                self.push(Problem::new(format!("`resolve_image = \"{other}\"` is not a mode"), span_of(r)).help(help));
                ResolveImage::Never
            }
        }
    }

    /// A stack's name, when declared (a problem recorded otherwise).
    pub(crate) fn known_stack(&mut self, name: &S<String>, stacks: &[Stack]) -> bool {
        if stacks.iter().any(|s| &s.name == name.get_ref()) {
            return true;
        }
        let help = match did_you_mean(name.get_ref(), stacks.iter().map(|s| s.name.as_str())) {
            Some(g) => format!("did you mean `{g}`?"),
            None => "declare it in a `[[stacks]]` section with its Compose files".into(),
        };
        self.push(
            Problem::new(format!("stack `{}` is not declared", name.get_ref()), span_of(name))
                .label("unknown stack")
                .help(help),
        );
        false
    }
}

fn read_compose(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > MAX_COMPOSE_BYTES {
        return Err(format!(
            "{} bytes; Compose files are limited to {MAX_COMPOSE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// What one Compose file declares that swarm-e2e needs.
#[derive(Default)]
pub(crate) struct ComposeFile {
    services: Vec<String>,
    builds: Vec<ComposeBuild>,
    /// Top-level `secrets:` and `configs:` with a literal `file:`, by name (the path as
    /// written: the caller resolves it).
    secret_files: Vec<(String, String)>,
    config_files: Vec<(String, String)>,
    /// Each service's placement keys (`deploy:`), as written.
    placements: Vec<ComposePlacement>,
}

/// The entries of top-level `section` (`secrets`, `configs`) made from a file, as
/// written; interpolated paths and templates are left out (what the task sees is the
/// CLI's or the engine's rendering, not the file).
fn file_sources(doc: &serde_yaml_ng::Value, section: &str) -> Vec<(String, String)> {
    let Some(m) = doc.get(section).and_then(|s| s.as_mapping()) else {
        return Vec::new();
    };
    m.iter()
        .filter_map(|(k, v)| {
            if v.get("template_driver").is_some() {
                return None;
            }
            let file = v.get("file")?.as_str().filter(|f| !f.contains('$'))?;
            Some((k.as_str()?.to_string(), file.to_string()))
        })
        .collect()
}

/// A service's `build:` (short form: the context; long form: context, dockerfile, args)
/// with the `image` it is built as.
fn compose_build(
    service: &str,
    def: &serde_yaml_ng::Value,
    build: &serde_yaml_ng::Value,
    folder: &Path,
) -> Result<ComposeBuild, String> {
    let image = def
        .get("image")
        .and_then(|i| i.as_str())
        .ok_or("it has `build` but no `image` (the stack runs an image by name: swarm-e2e builds it as that)")?;
    if image.contains('$') {
        return Err(format!(
            "its `image` ({image}) is interpolated: the tag to build must be written out"
        ));
    }
    let text = |v: &serde_yaml_ng::Value| -> Option<String> {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
            .or_else(|| v.as_f64().map(|n| n.to_string()))
            .or_else(|| v.as_bool().map(|b| b.to_string()))
    };
    let (context, dockerfile, args) = match build {
        serde_yaml_ng::Value::String(context) => (context.clone(), None, BTreeMap::new()),
        serde_yaml_ng::Value::Mapping(m) => {
            let get = |k: &str| m.get(serde_yaml_ng::Value::String(k.into()));
            let context = get("context").and_then(|c| c.as_str()).unwrap_or(".").to_string();
            let dockerfile = get("dockerfile").and_then(|d| d.as_str()).map(str::to_string);
            let mut args = BTreeMap::new();
            match get("args") {
                Some(serde_yaml_ng::Value::Mapping(a)) => {
                    for (k, v) in a {
                        if let (Some(k), Some(v)) = (k.as_str(), text(v)) {
                            args.insert(k.to_string(), v);
                        }
                    }
                }
                Some(serde_yaml_ng::Value::Sequence(a)) => {
                    for item in a.iter().filter_map(|i| i.as_str()) {
                        let (k, v) = item.split_once('=').unwrap_or((item, ""));
                        args.insert(k.to_string(), v.to_string());
                    }
                }
                _ => {}
            }
            (context, dockerfile, args)
        }
        _ => return Err("`build` is neither a folder nor a mapping".into()),
    };
    let context = folder.join(context);
    if !context.is_dir() {
        return Err(format!("its build context {} is not a folder", context.display()));
    }
    Ok(ComposeBuild {
        service: service.to_string(),
        image: image.to_string(),
        context,
        dockerfile,
        args,
    })
}

//! Chat templates: the Jinja a model ships in `tokenizer.chat_template`, rendered with minijinja
//! the way transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, loop
//! controls, Python string methods, `raise_exception`, `strftime_now`), plus built-ins by name.

use anyhow::{anyhow, Result};
use minijinja::{context, Environment, Error, ErrorKind, Value};

pub use super::builtin_templates::BUILTINS;
use super::Message;
use crate::memory_budget;

/// The built-in template for a model without one, by its `general.architecture`; others get
/// chatml.
const BUILTIN_BY_ARCHITECTURE: &[(&str, &str)] =
    &[("gemma3", "gemma"), ("gemma3n", "gemma"), ("gemma4", "gemma"), ("llama", "llama3")];

/// The name of the built-in template for a model of `architecture` that has none of its own.
pub fn builtin_for_architecture(architecture: &str) -> &'static str {
    BUILTIN_BY_ARCHITECTURE.iter().find(|(a, _)| *a == architecture).map_or("chatml", |(_, t)| *t)
}

/// What a template is rendered with besides the messages.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    pub bos_token: String,
    pub eos_token: String,
    /// `enable_thinking` for templates that read it (Qwen3, Gemma 4); unset leaves the template's default.
    pub enable_thinking: Option<bool>,
    /// The functions the model may call, as transformers passes `tools`: OpenAI's
    /// `{"type": "function", "function": {...}}` objects; unset renders `tools` as none.
    pub tools: Option<serde_json::Value>,
    /// llama.cpp's extra variables, as llama-server and llama-cli pass them: today's
    /// `date_string` (Llama 3.x's system prompt) and `datetime`, and `functions` (the tools as
    /// indented JSON, or empty; firefunction). transformers passes none of them (Llama 3.x then
    /// prints its fixed default date).
    pub llama_cpp_variables: bool,
}

/// A parsed chat template, ready to render.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file, a model's metadata key), to begin its errors.
    origin: String,
    source: String,
    /// The clock of `strftime_now`, `date_string` and `datetime` (`None`: the local time).
    now: Option<chrono::NaiveDateTime>,
}

impl ChatTemplate {
    /// Parses `source`, read from `origin`; errors name the origin and say which line is wrong
    /// and why.
    pub fn new(source: &str, origin: &str) -> Result<Self> {
        Self::with_clock(source, origin, None)
    }

    /// As [`ChatTemplate::new`], with `strftime_now` reading `now` instead of the local clock
    /// (for reproducible renders).
    pub fn with_clock(source: &str, origin: &str, now: Option<chrono::NaiveDateTime>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(200);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Jinja2's `iterable`: none is not (minijinja would iterate it as empty).
        env.add_test("iterable", |v: Value| !v.is_none() && !v.is_undefined() && v.try_iter().is_ok());
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", move |format: String| -> Result<String, Error> {
            use std::fmt::Write;
            let t = now.unwrap_or_else(|| chrono::Local::now().naive_local());
            // chrono reports a bad format (`%Q`, a lone `%`) as a fmt::Error, which to_string turns into a panic.
            let mut out = String::new();
            write!(out, "{}", t.format(&format))
                .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: bad format {format:?}")))?;
            Ok(out)
        });
        env.add_template_owned("chat", without_generation_tags(source))
            .map_err(|e| anyhow!("{origin}: chat template: {}", describe(&e)))?;
        Ok(ChatTemplate { env, origin: origin.to_string(), source: source.to_string(), now })
    }

    /// The template's text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A built-in template by name.
    pub fn builtin(name: &str) -> Result<Self> {
        let source = BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).ok_or_else(|| {
            let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
            anyhow!("unknown built-in template {name:?}: known ones are {}", names.join(", "))
        })?;
        Self::new(source, &format!("built-in template {name}"))
    }

    /// Renders `messages`: exactly the text the model will see.
    pub fn render(&self, messages: &[Message], opts: &RenderOptions) -> Result<String> {
        let template = self.env.get_template("chat").expect("added in new");
        let mut ctx = context! {
            messages => messages,
            add_generation_prompt => opts.add_generation_prompt,
            bos_token => opts.bos_token,
            eos_token => opts.eos_token,
            tools => opts.tools.as_ref().map_or(Value::from(()), Value::from_serialize),
        };
        if opts.llama_cpp_variables {
            let now = self.now.unwrap_or_else(|| chrono::Local::now().naive_local());
            let functions = match &opts.tools {
                Some(tools) => serde_json::to_string_pretty(tools).unwrap_or_default(),
                None => String::new(),
            };
            ctx = context! {
                date_string => now.format("%d %b %Y").to_string(),
                datetime => now.format("%b %d %Y").to_string(),
                functions => functions,
                ..ctx
            };
        }
        if let Some(thinking) = opts.enable_thinking {
            ctx = context! { enable_thinking => thinking, ..ctx };
        }
        let mut out = Capped(Vec::new());
        let origin = &self.origin;
        let over_budget =
            format!("{origin}: chat template: rendering needs more than {} MiB of memory", RENDER_MEMORY >> 20);
        memory_budget::with_budget(RENDER_MEMORY, &over_budget, || template.render_captured_to(ctx, &mut out))
            .map_err(|e| match e.kind() {
                ErrorKind::WriteFailure => {
                    anyhow!("{origin}: chat template: the rendered prompt is longer than {MAX_OUTPUT} bytes")
                }
                _ => anyhow!("{origin}: chat template: {}", describe(&e)),
            })?;
        Ok(String::from_utf8(out.0).expect("minijinja writes UTF-8"))
    }
}

/// Instructions a render may run: the longest real templates take a few hundred per message,
/// and a hostile loop must end in about a second, not a minute (50 million took 86 s in a
/// sanitizer build).
const FUEL: u64 = 2_000_000;
/// The longest prompt a render may produce (far beyond any context window): a hostile template
/// repeating a 100 MB string must fail, not fill memory.
const MAX_OUTPUT: usize = 64 << 20;
/// The memory a render may hold at once: a few times [`MAX_OUTPUT`]; a template that keeps
/// doubling a string must end with an error, not an abort or a full memory.
const RENDER_MEMORY: usize = 1 << 30;
/// The widest `tojson` indent accepted (Python's `indent=10**12` would fill memory too).
const MAX_INDENT: usize = 64;

/// A writer that fails once the output would pass [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// transformers' `{% generation %}...{% endgeneration %}` (it marks assistant text for training
/// masks and renders its body unchanged) as a block that does the same in any Jinja: `if true`,
/// keeping each tag's whitespace control.
fn without_generation_tags(source: &str) -> String {
    static TAG: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let tag = TAG.get_or_init(|| regex::Regex::new(r"\{%(-?)\s*(end)?generation\s*(-?)%\}").expect("valid regex"));
    tag.replace_all(source, |c: &regex::Captures| {
        let body = if c.get(2).is_some() { "endif" } else { "if true" };
        format!("{{%{} {body} {}%}}", &c[1], &c[3])
    })
    .into_owned()
}

/// transformers' `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=indent)`, which
/// (unlike minijinja's) escapes no HTML characters and puts a space after `,` and `:`.
fn tojson(value: Value, indent: Option<usize>, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    use serde::Serialize;
    let indent = match indent {
        Some(n) => Some(n),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    // Accepted for compatibility; strata always writes UTF-8 and keeps key order.
    if let Some(n) = indent.filter(|&n| n > MAX_INDENT) {
        return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: indent {n} is more than {MAX_INDENT}")));
    }
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&pad),
            ))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PythonCompact)),
    };
    result.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(String::from_utf8(out).expect("serde_json writes UTF-8")))
}

/// serde_json output with Python's default separators `", "` and `": "`.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// "line N: what went wrong", from a minijinja error and its causes.
fn describe(e: &Error) -> String {
    let mut msg = match e.line() {
        Some(line) => format!("line {line}: {}", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.detail().map_or_else(|| e.kind().to_string(), str::to_string),
    };
    if e.kind() == ErrorKind::InvalidOperation && e.detail().is_some() {
        msg = format!("{msg} (raised by the template)");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<Message> {
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Capital of France?"),
        ]
    }

    #[test]
    fn chatml_builtin() {
        let t = ChatTemplate::builtin("chatml").unwrap();
        let out = t.render(&conv(), &RenderOptions { add_generation_prompt: true, ..Default::default() }).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_builtin_folds_the_system_prompt() {
        let t = ChatTemplate::builtin("gemma").unwrap();
        // As llama.cpp's gemma: no BOS written (tokenizing adds the model's), the system prompt trimmed.
        let opts = RenderOptions { add_generation_prompt: true, bos_token: "<bos>".into(), ..Default::default() };
        let out = t.render(&conv(), &opts).unwrap();
        assert_eq!(
            out,
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn python_methods_namespace_and_raise() {
        let t = ChatTemplate::new(
            "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}{{ ns.n }}",
            "t.jinja",
        )
        .unwrap();
        let out = t.render(&[Message::new("user", " a b ")], &RenderOptions::default()).unwrap();
        assert_eq!(out, "A B!1");
        let t = ChatTemplate::new(
            "{% if messages|length > 0 %}{{ raise_exception('no messages allowed') }}{% endif %}",
            "t.jinja",
        )
        .unwrap();
        let err = t.render(&[Message::new("user", "x")], &RenderOptions::default()).unwrap_err().to_string();
        assert!(err.contains("no messages allowed") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let t = ChatTemplate::new(
            "{{ messages[0] | tojson }}|{{ [1, 'x<y&z', {'b': none, 'a': true}] | tojson(indent=2) }}",
            "t.jinja",
        )
        .unwrap();
        let out = t.render(&[Message::new("user", "héllo <b>")], &RenderOptions::default()).unwrap();
        assert_eq!(out, "{\"role\": \"user\", \"content\": \"héllo <b>\"}|[\n  1,\n  \"x<y&z\",\n  {\n    \"b\": null,\n    \"a\": true\n  }\n]");
    }

    #[test]
    fn broken_templates_say_which_line() {
        let err = ChatTemplate::new("ok\n{% for m in messages %}\n{{ m.content }\n{% endfor %}", "t.jinja")
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("t.jinja: chat template: line 3"), "{err}");
        let err = ChatTemplate::builtin("nope").err().unwrap().to_string();
        assert!(err.contains("known ones are chatml, llama2, ") && err.contains(", mistral-v7, "), "{err}");
    }

    #[test]
    fn runaway_templates_stop() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "t.jinja",
        )
        .unwrap();
        let err = t.render(&[], &RenderOptions::default()).unwrap_err().to_string();
        assert!(err.contains("fuel") || err.contains("range"), "{err}");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/chat_template.rs) and by writing that target: a bad
    /// strftime format panicked (chrono's fmt::Error through to_string), a huge tojson indent and
    /// a repeated 100 MB string filled memory, and a nested loop ran for 86 s (sanitizer build)
    /// before its fuel ran out.
    #[test]
    fn hostile_templates_fail_cleanly() {
        let err = |source: &str| {
            let t = ChatTemplate::new(source, "t.jinja").unwrap();
            let start = std::time::Instant::now();
            let err = t.render(&conv(), &RenderOptions::default()).unwrap_err().to_string();
            assert!(start.elapsed().as_secs() < 5, "{source}: took {:?}", start.elapsed());
            err
        };
        assert!(err("{{ strftime_now('%Q') }}").contains("strftime_now: bad format \"%Q\""));
        assert!(err("{{ strftime_now('%') }}").contains("bad format"));
        assert!(err("{{ messages | tojson(indent=3000000000) }}").contains("tojson: indent 3000000000 is more than 64"));
        assert!(err("{% set x = 'a' * 100000000 %}{% for i in range(100) %}{{ x }}{% endfor %}")
            .contains("longer than 67108864 bytes"));
        assert!(
            err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").contains("fuel")
        );
        let t = ChatTemplate::with_clock(
            "{{ strftime_now('%d %b %Y') }}|{{ date_string }}|{{ datetime }}",
            "t.jinja",
            chrono::NaiveDate::from_ymd_opt(2026, 1, 2).and_then(|d| d.and_hms_opt(0, 0, 0)),
        )
        .unwrap();
        // llama.cpp's date variables (Llama 3.x's `date_string`, firefunction's `datetime`).
        let extras = RenderOptions { llama_cpp_variables: true, ..RenderOptions::default() };
        assert_eq!(t.render(&[], &extras).unwrap(), "02 Jan 2026|02 Jan 2026|Jan 02 2026");
    }
}

/// Conformance with transformers: every template in tests/fixtures/templates rendered for the
/// recorded conversations, compared with what transformers' `render_jinja_template` produced
/// (scripts/fixtures/gen_template_fixtures.py).
#[cfg(test)]
mod conformance {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    /// The templates of the models strata targets: these must match in every case.
    const MUST_MATCH: &[&str] = &[
        "HuggingFaceTB-SmolLM2-135M-Instruct.jinja",
        "google-gemma-3-it.jinja",
        "google-gemma-3n-E2B-it.jinja",
        "llama.cpp/google-gemma-4-31B-it.jinja",
        "llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja",
        "llama.cpp/meta-llama-Llama-3.2-3B-Instruct.jinja",
        "llama.cpp/Qwen-Qwen3-0.6B.jinja",
    ];

    /// Templates that differ somewhere, as listed (with the reason) in docs/run.md's
    /// "Chat template conformance" section.
    fn documented_mismatches() -> BTreeSet<String> {
        let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/run.md")).unwrap();
        let section = page.split("## Chat template conformance").nth(1).expect("docs/run.md has the section");
        let section = section.split("\n#").next().unwrap(); // up to the next heading
        section
            .lines()
            .filter_map(|l| l.strip_prefix("- `"))
            .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
            .collect()
    }

    /// Whether our error is the one transformers' Jinja raised (`"TypeName: message"`): a
    /// template's own `raise_exception` message, or the same kind of failure.
    fn raises_the_same(ours: &str, theirs: &str) -> bool {
        let (kind, message) = theirs.split_once(": ").unwrap_or((theirs, ""));
        match kind {
            "TemplateError" => ours.contains(message),
            "UndefinedError" => {
                ours.contains("undefined") || ours.contains(message.split('\'').nth(1).unwrap_or(message))
            }
            "TypeError" if message.contains("not iterable") => {
                ours.contains("iterable") || ours.contains("cannot iterate") || ours.contains("not a sequence")
            }
            _ => false,
        }
    }

    #[test]
    fn matches_transformers() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/templates");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let now = chrono::NaiveDateTime::parse_from_str(doc["now"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap();
        let conversations: Vec<Vec<Message>> = doc["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let message = |m: &Value| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap());
                c.as_array().unwrap().iter().map(message).collect()
            })
            .collect();
        let special = &doc["special_tokens"];
        let mut mismatched: BTreeSet<String> = BTreeSet::new();
        let (mut matched, mut total) = (0, 0);
        let mut report = Vec::new();
        for case in doc["cases"].as_array().unwrap() {
            let name = case["template"].as_str().unwrap();
            let source = std::fs::read_to_string(dir.join(name)).unwrap();
            let opts = RenderOptions {
                add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
                bos_token: special["bos_token"].as_str().unwrap().into(),
                eos_token: special["eos_token"].as_str().unwrap().into(),
                enable_thinking: None,
                tools: None,
                llama_cpp_variables: false,
            };
            let conv = &conversations[case["conversation"].as_u64().unwrap() as usize];
            let ours = ChatTemplate::with_clock(&source, name, Some(now)).and_then(|t| t.render(conv, &opts));
            total += 1;
            let ok = match (&ours, case.get("output").and_then(Value::as_str)) {
                (Ok(text), Some(expected)) => text == expected,
                (Err(e), None) => raises_the_same(&e.to_string(), case["error"].as_str().unwrap_or_default()),
                _ => false,
            };
            if ok {
                matched += 1;
            } else {
                if mismatched.insert(name.to_string()) {
                    report.push(format!(
                        "{name} (conversation {}): {:?}",
                        case["conversation"],
                        ours.as_ref().map(|s| &s[..s.len().min(160)]).map_err(|e| e.to_string())
                    ));
                }
            }
        }
        eprintln!(
            "chat templates: {matched} of {total} renders match transformers; templates differing: {}",
            mismatched.len()
        );
        for line in &report {
            eprintln!("  {line}");
        }
        for name in MUST_MATCH {
            assert!(!mismatched.contains(*name), "{name} must match transformers exactly");
        }
        assert_eq!(mismatched, documented_mismatches(), "docs/run.md must explain exactly the templates that differ");
    }
}

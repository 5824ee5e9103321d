//! strata's built-in chat templates ([`strata_run::chat::builtin_templates`]) against llama.cpp's
//! own: every name renders, for the same messages, exactly what `llama_chat_apply_template`
//! writes for it.

use std::ffi::{c_char, CStr, CString};

use strata_run::chat::template::{ChatTemplate, RenderOptions, BUILTINS};
use strata_run::chat::Message;

/// llama.cpp's rendering of `messages` with its built-in `name`, or `None` when it does not
/// know the name.
fn llama_cpp_render(name: &str, messages: &[Message], add_ass: bool) -> Option<String> {
    let name = CString::new(name).unwrap();
    let strings: Vec<(CString, CString)> = messages
        .iter()
        .map(|m| (CString::new(m.role.as_str()).unwrap(), CString::new(m.content.as_str()).unwrap()))
        .collect();
    let chat: Vec<llama_cpp_sys_2::llama_chat_message> = strings
        .iter()
        .map(|(role, content)| llama_cpp_sys_2::llama_chat_message { role: role.as_ptr(), content: content.as_ptr() })
        .collect();
    // SAFETY: every pointer lives in `name`/`strings` for the call; a null buffer asks for the length.
    let n = unsafe {
        llama_cpp_sys_2::llama_chat_apply_template(
            name.as_ptr(),
            chat.as_ptr(),
            chat.len(),
            add_ass,
            std::ptr::null_mut(),
            0,
        )
    };
    if n < 0 {
        return None;
    }
    let mut buf = vec![0u8; n as usize + 1];
    // SAFETY: as above; `buf` holds `n + 1` bytes and llama.cpp writes at most that many.
    let written = unsafe {
        llama_cpp_sys_2::llama_chat_apply_template(
            name.as_ptr(),
            chat.as_ptr(),
            chat.len(),
            add_ass,
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len() as i32,
        )
    };
    assert_eq!(written, n);
    buf.truncate(n as usize);
    Some(String::from_utf8(buf).expect("llama.cpp writes the UTF-8 it was given"))
}

/// The names of llama.cpp's built-in templates (its `LLM_CHAT_TEMPLATES`).
fn llama_cpp_names() -> Vec<String> {
    // SAFETY: a null output with length 0 only asks for the count.
    let n = unsafe { llama_cpp_sys_2::llama_chat_builtin_templates(std::ptr::null_mut(), 0) };
    let mut names = vec![std::ptr::null::<c_char>(); n as usize];
    // SAFETY: `names` holds `n` pointers; llama.cpp fills them with static strings.
    unsafe { llama_cpp_sys_2::llama_chat_builtin_templates(names.as_mut_ptr(), names.len()) };
    names.iter().map(|&p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()).collect()
}

fn conversations() -> Vec<Vec<Message>> {
    let m = Message::new;
    vec![
        vec![m("system", "Be brief."), m("user", "Hi")],
        vec![m("user", "Hi")],
        vec![m("system", "Be brief."), m("user", "Hi"), m("assistant", "Hello."), m("user", "Capital of France?")],
        vec![m("user", "Hi"), m("assistant", "Hello.")],
        vec![],
        // Whitespace llama.cpp's trim (C's isspace) removes, and Unicode spaces it keeps;
        // two system prompts, one after a turn; an assistant first; tool answers.
        vec![
            m("assistant", " \t\x0b\x0cWelcome. \r\n"),
            m("system", "\n Sys one. "),
            m("system", "\u{3000}Sys two.\u{a0}"),
            m("user", "  What is 2+2?\n"),
            m("assistant", "4"),
            m("tool", " {\"result\": 4} "),
            m("user", "Thanks\u{2003}"),
        ],
        vec![m("user", "Run it."), m("assistant_tool_call", "{\"name\": \"f\"}"), m("tool", "ok"), m("function", "x")],
    ]
}

/// Every one of llama.cpp's names is a strata built-in, and each built-in llama.cpp knows
/// renders what llama.cpp renders. (All of strata's names are llama.cpp's, `mistral`
/// included: llama.cpp reads that name as llama2.)
#[test]
fn chat_builtin_templates_match_llama_cpp() {
    let ours: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
    let theirs = llama_cpp_names();
    assert!(theirs.len() >= 54, "llama.cpp lists {} built-in templates", theirs.len());
    for name in &theirs {
        assert!(ours.contains(&name.as_str()), "llama.cpp's built-in template {name:?} is not one of strata's");
    }
    let mut checked = 0;
    for (name, _) in BUILTINS {
        let template = ChatTemplate::builtin(name).unwrap();
        for (i, conversation) in conversations().iter().enumerate() {
            for add_generation_prompt in [false, true] {
                let theirs = llama_cpp_render(name, conversation, add_generation_prompt)
                    .unwrap_or_else(|| panic!("llama.cpp does not know the template {name:?}"));
                let opts = RenderOptions { add_generation_prompt, ..RenderOptions::default() };
                let ours = template.render(conversation, &opts).unwrap();
                assert_eq!(
                    ours, theirs,
                    "built-in template {name}, conversation {i}, add_generation_prompt {add_generation_prompt}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, BUILTINS.len() * conversations().len() * 2);
}

//! Built-in chat templates (`--chat-template NAME`): every name of llama.cpp's
//! `LLM_CHAT_TEMPLATES` (src/llama-chat.cpp of llama-cpp-sys-2 0.1.160), each as Jinja whose
//! output is byte for byte what llama.cpp's `llama_chat_apply_template` writes for that name,
//! plus `mistral`. Like llama.cpp's, they write their literal markers (`<s>`, `</s>`) and never
//! `bos_token`/`eos_token`; `trim` is C's `isspace` set, as llama.cpp's. The adapter's test
//! `src/llama/chat_builtin_check.rs` renders each one and compares with llama.cpp's output.

// Every tag trims the whitespace around it, so a source's indentation is never written. A family
// that differs in a few switches shares one body: each source sets its switches, then the body.
macro_rules! llama2 {
    ($sys:literal, $bos:literal, $strip:literal) => {
        concat!(
            "{%- set support_system = ",
            $sys,
            " -%}\n{%- set bos_inside_history = ",
            $bos,
            " -%}\n{%- set strip = ",
            $strip,
            " -%}\n",
            r"{%- set ns = namespace(inside_turn=true) -%}
{{- '[INST] ' -}}
{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') if strip else message.content -%}
    {%- if not ns.inside_turn -%}
        {%- set ns.inside_turn = true -%}
        {{- '<s>[INST] ' if bos_inside_history else '[INST] ' -}}
    {%- endif -%}
    {%- if message.role == 'system' -%}
        {{- '<<SYS>>\n' + content + '\n<</SYS>>\n\n' if support_system else content + '\n' -}}
    {%- elif message.role == 'user' -%}
        {{- content + ' [/INST]' -}}
    {%- else -%}
        {{- content + '</s>' -}}
        {%- set ns.inside_turn = false -%}
    {%- endif -%}
{%- endfor -%}"
        )
    };
}

macro_rules! mistral_v1_v3 {
    ($leading:literal, $trailing:literal, $trim:literal) => {
        concat!(
            "{%- set leading = '",
            $leading,
            "' -%}\n{%- set trailing = '",
            $trailing,
            "' -%}\n{%- set trim_assistant = ",
            $trim,
            " -%}\n",
            r"{%- set ns = namespace(inside_turn=false) -%}
{%- for message in messages -%}
    {%- if not ns.inside_turn -%}
        {{- leading + '[INST]' + trailing -}}
        {%- set ns.inside_turn = true -%}
    {%- endif -%}
    {%- if message.role == 'system' -%}
        {{- message.content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- message.content + leading + '[/INST]' -}}
    {%- else -%}
        {{- trailing + (message.content | trim(' \t\n\r\x0b\x0c') if trim_assistant else message.content) + '</s>' -}}
        {%- set ns.inside_turn = false -%}
    {%- endif -%}
{%- endfor -%}"
        )
    };
}

macro_rules! mistral_v7 {
    ($space:literal) => {
        concat!(
            "{%- set space = '",
            $space,
            "' -%}\n",
            r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- '[SYSTEM_PROMPT]' + space + message.content + '[/SYSTEM_PROMPT]' -}}
    {%- elif message.role == 'user' -%}
        {{- '[INST]' + space + message.content + '[/INST]' -}}
    {%- else -%}
        {{- space + message.content + '</s>' -}}
    {%- endif -%}
{%- endfor -%}"
        )
    };
}

macro_rules! vicuna {
    ($orca:literal) => {
        concat!(
            "{%- set orca = ",
            $orca,
            " -%}\n",
            r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- 'SYSTEM: ' + message.content + '\n' if orca else message.content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- 'USER: ' + message.content + '\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- 'ASSISTANT: ' + message.content + '</s>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'ASSISTANT:' -}}
{%- endif -%}"
        )
    };
}

macro_rules! granite4 {
    () => {
        r"{%- for message in messages -%}
    {%- if message.role == 'assistant_tool_call' -%}
        {{- '<|start_of_role|>assistant<|end_of_role|><|tool_call|>' -}}
    {%- else -%}
        {{- '<|start_of_role|>' + message.role + '<|end_of_role|>' -}}
    {%- endif -%}
    {{- message.content + '<|end_of_text|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_of_role|>assistant<|end_of_role|>' -}}
{%- endif -%}"
    };
}

macro_rules! bailing {
    ($think:literal) => {
        concat!(
            "{%- set think = ",
            $think,
            " -%}\n",
            r"{%- for message in messages -%}
    {{- '<role>' + ('HUMAN' if message.role == 'user' else message.role | upper) + '</role>' + message.content -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<role>ASSISTANT</role>' + ('<think>' if think else '') -}}
{%- endif -%}"
        )
    };
}

/// (name, Jinja source), in llama.cpp's order, then `mistral`.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "chatml",
        r"{%- for message in messages -%}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}",
    ),
    ("llama2", llama2!("false", "false", "false")),
    ("llama2-sys", llama2!("true", "false", "false")),
    ("llama2-sys-bos", llama2!("true", "true", "false")),
    ("llama2-sys-strip", llama2!("true", "false", "true")),
    ("mistral-v1", mistral_v1_v3!(" ", " ", "false")),
    ("mistral-v3", mistral_v1_v3!("", " ", "true")),
    ("mistral-v3-tekken", mistral_v1_v3!("", "", "false")),
    ("mistral-v7", mistral_v7!(" ")),
    ("mistral-v7-tekken", mistral_v7!("")),
    (
        "phi3",
        r"{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n' + message.content + '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "phi4",
        r"{%- for message in messages -%}
    {{- '<|im_start|>' + message.role + '<|im_sep|>' + message.content + '<|im_end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant<|im_sep|>' -}}
{%- endif -%}",
    ),
    (
        "falcon3",
        r"{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n' + message.content + '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "zephyr",
        r"{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n' + message.content + '<|endoftext|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "monarch",
        r"{%- for message in messages -%}
    {{- ('' if loop.first else '<s>') + message.role + '\n' + message.content + '</s>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<s>assistant\n' -}}
{%- endif -%}",
    ),
    (
        "gemma",
        r"{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {%- set ns.system = ns.system + message.content | trim(' \t\n\r\x0b\x0c') -%}
    {%- else -%}
        {%- set role = 'model' if message.role == 'assistant' else message.role -%}
        {{- '<start_of_turn>' + role + '\n' -}}
        {%- if ns.system and role != 'model' -%}
            {{- ns.system + '\n\n' -}}
            {%- set ns.system = '' -%}
        {%- endif -%}
        {{- message.content | trim(' \t\n\r\x0b\x0c') + '<end_of_turn>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}",
    ),
    (
        "orion",
        r"{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {%- set ns.system = ns.system + message.content -%}
    {%- elif message.role == 'user' -%}
        {{- 'Human: ' -}}
        {%- if ns.system -%}
            {{- ns.system + '\n\n' -}}
            {%- set ns.system = '' -%}
        {%- endif -%}
        {{- message.content + '\n\nAssistant: </s>' -}}
    {%- else -%}
        {{- message.content + '</s>' -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "openchat",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- message.content + '<|end_of_turn|>' -}}
    {%- else -%}
        {{- 'GPT4 Correct ' + message.role[:1] | upper + message.role[1:] + ': ' + message.content + '<|end_of_turn|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'GPT4 Correct Assistant:' -}}
{%- endif -%}",
    ),
    ("vicuna", vicuna!("false")),
    ("vicuna-orca", vicuna!("true")),
    (
        "deepseek",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- message.content -}}
    {%- elif message.role == 'user' -%}
        {{- '### Instruction:\n' + message.content + '\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '### Response:\n' + message.content + '\n<|EOT|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '### Response:\n' -}}
{%- endif -%}",
    ),
    (
        "deepseek2",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- message.content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- 'User: ' + message.content + '\n\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- 'Assistant: ' + message.content + '<｜end▁of▁sentence｜>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'Assistant:' -}}
{%- endif -%}",
    ),
    (
        "deepseek3",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- message.content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- '<｜User｜>' + message.content -}}
    {%- elif message.role == 'assistant' -%}
        {{- '<｜Assistant｜>' + message.content + '<｜end▁of▁sentence｜>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<｜Assistant｜>' -}}
{%- endif -%}",
    ),
    (
        "deepseek-ocr",
        r"{%- for message in messages -%}
    {{- message.content -}}
{%- endfor -%}",
    ),
    (
        "command-r",
        r"{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') -%}
    {%- if message.role == 'system' -%}
        {{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + content + '<|END_OF_TURN_TOKEN|>' -}}
    {%- elif message.role == 'user' -%}
        {{- '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content + '<|END_OF_TURN_TOKEN|>' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' + content + '<|END_OF_TURN_TOKEN|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' -}}
{%- endif -%}",
    ),
    (
        "llama3",
        r"{%- for message in messages -%}
    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim(' \t\n\r\x0b\x0c') + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}",
    ),
    (
        "chatglm3",
        r"{{- '[gMASK]sop' -}}
{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n ' + message.content -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
{%- endif -%}",
    ),
    (
        "chatglm4",
        r"{{- '[gMASK]<sop>' -}}
{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n' + message.content -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "glmedge",
        r"{%- for message in messages -%}
    {{- '<|' + message.role + '|>\n' + message.content -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>' -}}
{%- endif -%}",
    ),
    (
        "minicpm",
        r"{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- '<用户>' + message.content | trim(' \t\n\r\x0b\x0c') + '<AI>' -}}
    {%- else -%}
        {{- message.content | trim(' \t\n\r\x0b\x0c') -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "exaone3",
        r"{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') -%}
    {%- if message.role == 'system' -%}
        {{- '[|system|]' + content + '[|endofturn|]\n' -}}
    {%- elif message.role == 'user' -%}
        {{- '[|user|]' + content + '\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '[|assistant|]' + content + '[|endofturn|]\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '[|assistant|]' -}}
{%- endif -%}",
    ),
    (
        "exaone4",
        r"{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') -%}
    {%- if message.role == 'system' -%}
        {{- '[|system|]' + content + '[|endofturn|]\n' -}}
    {%- elif message.role == 'user' -%}
        {{- '[|user|]' + content + '\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '[|assistant|]' + content + '[|endofturn|]\n' -}}
    {%- elif message.role == 'tool' -%}
        {{- '[|tool|]' + content + '[|endofturn|]\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '[|assistant|]' -}}
{%- endif -%}",
    ),
    (
        "exaone-moe",
        r"{%- for message in messages -%}
    {%- if message.role in ['system', 'user', 'assistant', 'tool'] -%}
        {{- '<|' + message.role + '|>\n' + message.content | trim(' \t\n\r\x0b\x0c') + '<|endofturn|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "rwkv-world",
        r"{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') -%}
    {%- if message.role == 'system' -%}
        {{- 'System: ' + content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- 'User: ' + content + '\n\n' + ('Assistant:' if loop.last else '') -}}
    {%- elif message.role == 'assistant' -%}
        {{- 'Assistant: ' + content + '\n\n' -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "granite",
        r"{%- for message in messages -%}
    {{- '<|start_of_role|>' + message.role + '<|end_of_role|>' -}}
    {%- if message.role == 'assistant_tool_call' -%}
        {{- '<|tool_call|>' -}}
    {%- endif -%}
    {{- message.content + '<|end_of_text|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_of_role|>assistant<|end_of_role|>' -}}
{%- endif -%}",
    ),
    ("granite-4.0", granite4!()),
    ("granite-4.1", granite4!()),
    (
        "gigachat",
        r"{%- set has_system = messages | length > 0 and messages[0].role == 'system' -%}
{{- '<s>' + (messages[0].content + '<|message_sep|>' if has_system else '') -}}
{%- for message in (messages[1:] if has_system else messages) -%}
    {%- if message.role == 'user' -%}
        {{- 'user<|role_sep|>' + message.content + '<|message_sep|>available functions<|role_sep|>[]<|message_sep|>' -}}
    {%- elif message.role == 'assistant' -%}
        {{- 'assistant<|role_sep|>' + message.content + '<|message_sep|>' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'assistant<|role_sep|>' -}}
{%- endif -%}",
    ),
    (
        "megrez",
        r"{%- for message in messages -%}
    {{- '<|role_start|>' + message.role + '<|role_end|>' + message.content + '<|turn_end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|role_start|>assistant<|role_end|>' -}}
{%- endif -%}",
    ),
    (
        "yandex",
        r"{%- for message in messages -%}
    {%- if message.role == 'user' -%}
        {{- ' Пользователь: ' + message.content + '\n\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- ' Ассистент: ' + message.content + '\n\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- ' Ассистент:[SEP]' -}}
{%- endif -%}",
    ),
    ("bailing", bailing!("false")),
    ("bailing-think", bailing!("true")),
    (
        "bailing2",
        r"{%- if not (messages | length > 0 and messages[0].role == 'system') -%}
    {{- '<role>SYSTEM</role>detailed thinking off<|role_end|>' -}}
{%- endif -%}
{%- for message in messages -%}
    {{- '<role>' + ('HUMAN' if message.role == 'user' else message.role | upper) + '</role>' + message.content + '<|role_end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<role>ASSISTANT</role>' -}}
{%- endif -%}",
    ),
    (
        "llama4",
        r"{%- for message in messages -%}
    {{- '<|header_start|>' + message.role + '<|header_end|>\n\n' + message.content | trim(' \t\n\r\x0b\x0c') + '<|eot|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|header_start|>assistant<|header_end|>\n\n' -}}
{%- endif -%}",
    ),
    (
        "smolvlm",
        r"{{- '<|im_start|>' -}}
{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- message.content + '\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- 'User: ' + message.content + '<end_of_utterance>\n' -}}
    {%- else -%}
        {{- 'Assistant: ' + message.content + '<end_of_utterance>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'Assistant:' -}}
{%- endif -%}",
    ),
    (
        "hunyuan-moe",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- '<|startoftext|>' + message.content + '<|extra_4|>' -}}
    {%- elif message.role == 'assistant' -%}
        {{- message.content + '<|eos|>' -}}
    {%- else -%}
        {{- '<|startoftext|>' + message.content + '<|extra_0|>' -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "gpt-oss",
        r"{%- for message in messages -%}
    {{- '<|start|>' + message.role + '<|message|>' + message.content -}}
    {{- '<|return|>' if message.role == 'assistant' else '<|end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start|>assistant' -}}
{%- endif -%}",
    ),
    (
        "hunyuan-dense",
        r"{%- for message in messages -%}
    {%- if loop.first and message.role == 'system' -%}
        {{- message.content + '<｜hy_place▁holder▁no▁3｜>' -}}
    {%- endif -%}
    {%- if message.role == 'assistant' -%}
        {{- '<｜hy_Assistant｜>' + message.content + '<｜hy_place▁holder▁no▁2｜>' -}}
    {%- elif message.role == 'user' -%}
        {{- '<｜hy_User｜>' + message.content + '<｜hy_Assistant｜>' -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "hunyuan-vl",
        r"{{- '<｜hy_begin▁of▁sentence｜>' -}}
{%- for message in messages -%}
    {%- if loop.first and message.role == 'system' -%}
        {{- message.content + '<｜hy_place▁holder▁no▁3｜>' -}}
    {%- elif message.role == 'user' -%}
        {{- message.content + '<｜hy_User｜>' -}}
    {%- elif message.role == 'assistant' -%}
        {{- message.content + '<｜hy_Assistant｜>' -}}
    {%- endif -%}
{%- endfor -%}",
    ),
    (
        "kimi-k2",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- '<|im_system|>system<|im_middle|>' -}}
    {%- elif message.role == 'user' -%}
        {{- '<|im_user|>user<|im_middle|>' -}}
    {%- elif message.role == 'assistant' -%}
        {{- '<|im_assistant|>assistant<|im_middle|>' -}}
    {%- elif message.role == 'tool' -%}
        {{- '<|im_system|>tool<|im_middle|>' -}}
    {%- endif -%}
    {{- message.content + '<|im_end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_assistant|>assistant<|im_middle|>' -}}
{%- endif -%}",
    ),
    (
        "seed_oss",
        r"{%- for message in messages -%}
    {%- set content = message.content | trim(' \t\n\r\x0b\x0c') if message.role == 'assistant' else message.content -%}
    {{- '<seed:bos>' + message.role + '\n' + content + '<seed:eos>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<seed:bos>assistant\n' -}}
{%- endif -%}",
    ),
    (
        "grok-2",
        r"{%- for message in messages -%}
    {%- if message.role == 'system' -%}
        {{- 'System: ' + message.content | trim(' \t\n\r\x0b\x0c') + '<|separator|>\n\n' -}}
    {%- elif message.role == 'user' -%}
        {{- 'Human: ' + message.content | trim(' \t\n\r\x0b\x0c') + '<|separator|>\n\n' -}}
    {%- elif message.role == 'assistant' -%}
        {{- 'Assistant: ' + message.content + '<|separator|>\n\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'Assistant:' -}}
{%- endif -%}",
    ),
    (
        "pangu-embedded",
        r"{%- set names = {'system': '系统', 'user': '用户', 'assistant': '助手', 'tool': '工具', 'function': '方法'} -%}
{%- for message in messages -%}
    {%- if loop.first and message.role != 'system' -%}
        {{- '[unused9]系统：[unused10]' -}}
    {%- endif -%}
    {%- if message.role in names -%}
        {{- '[unused9]' + names[message.role] + '：' + message.content + '[unused10]' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '[unused9]助手：' -}}
{%- endif -%}",
    ),
    (
        "solar-open",
        r"{%- for message in messages -%}
    {{- '<|begin|>' + message.role + '<|content|>' + message.content + '<|end|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|begin|>assistant' -}}
{%- endif -%}",
    ),
    // Not a name of llama.cpp's table, but llama.cpp reads a template text that begins with
    // `mistral` and has none of the v1/v3/v7 markers as llama2, so `mistral` is `llama2`.
    ("mistral", llama2!("false", "false", "false")),
];

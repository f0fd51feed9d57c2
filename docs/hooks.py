"""MkDocs hooks (``hooks:`` in mkdocs.yml): the component catalogue, generated from the registries at build
time, and formulas turned into MathML.

The catalogue pages (``catalogue/index.md`` and one page per family) never exist on disk: every build reads
``swapformer.registry`` (plug-ins included) and writes them afresh, so they cannot drift from the code.

Formulas: ``pymdownx.arithmatex`` marks ``$...$`` and ``$$...$$`` in the Markdown; :func:`mathml` converts
the marked TeX to MathML with ``latex2mathml`` (pure Python). Browsers render MathML natively, so the site
needs no MathJax or KaTeX script, no fonts from a CDN, and reads the same opened from disk. Without a math
font, browsers cannot stretch delimiters, so the pages avoid stretchy brackets (left-right pairs, matrices,
cases).

Also here: a griffe extension for the project's docstring dialect, and Sphinx roles shown as plain code.
"""

from __future__ import annotations

import html
import inspect
import re
from pathlib import Path
from typing import Any

import griffe
from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

from swapformer import compat
from swapformer.config import COMPONENT_KEYS, ModelConfig
from swapformer.models.builders import _context
from swapformer.registry import FAMILIES, Member, load_plugins

CATALOGUE = "catalogue"

# Options the builders fill in themselves: the sizes every member may take from the ModelConfig, and the
# sublayer, norm and depth a placement wraps. A recipe sets these through the ModelConfig keys, not per
# member.
_MODEL_SUPPLIED = set(_context(ModelConfig(vocab_size=8))) | {"sublayer", "norm", "num_layers"}


# ---- catalogue -------------------------------------------------------------------------------------------
def catalogue_pages() -> dict[str, str]:
    """Markdown of every catalogue page, keyed by its path under docs/."""
    failed = load_plugins()
    pages = {f"{CATALOGUE}/index.md": _index_page(failed)}
    for family, registry in FAMILIES.items():
        pages[f"{CATALOGUE}/{family}.md"] = _family_page(family, registry.description, registry.describe())
    return pages


def _index_page(failed: dict[str, str]) -> str:
    lines = [
        "# Component catalogue",
        "",
        "Every registered component, read from the registries when this site was built (plug-ins "
        "installed in the building environment included). `swapformer components` prints the same list in a terminal.",
        "",
        "A recipe picks a component by name under the model's `init_args`, with the family as the key; "
        "a mapping sets the member's options: `positional: rope` or "
        "`positional: {name: rope, base: 500000.0}`.",
        "",
        "| family | key in the model config | what it varies | members |",
        "|---|---|---|---|",
    ]
    for family, registry in FAMILIES.items():
        key = f"`{family}`" if family in COMPONENT_KEYS else "(built by the model)"
        members = ", ".join(f"[`{m.name}`]({family}.md#{_anchor(m.name)})" for m in registry.describe())
        lines.append(f"| [{family}]({family}.md) | {key} | {_cell(registry.description)} | {members} |")
    lines += ["", *_matrix()]
    if failed:
        lines += ["", '!!! warning "Plug-ins that failed to load while building this page"', ""]
        lines += [f"    - `{key}`: {_cell(error)}" for key, error in failed.items()]
    return "\n".join(lines) + "\n"


def _matrix() -> list[str]:
    rows = compat.compatibility_rows()
    kernels = sorted({r["attention"] for r in rows})
    cells = {(r["attention"], r["positional"]): r for r in rows}
    lines = [
        "## Which attention kernel works with which positional encoding",
        "",
        "Read from `swapformer.compat` (as `swapformer components --matrix` prints it). A refused pair fails "
        "when the config is checked, with a message naming an alternative; norms, placements and "
        "feed-forward members combine with everything.",
        "",
        "| positional \\ attention | " + " | ".join(f"`{k}`" for k in kernels) + " |",
        "|---|" + "---|" * len(kernels),
    ]
    for position in sorted({r["positional"] for r in rows}):
        marks = ["yes" if cells[k, position]["supported"] else "**no**" for k in kernels]
        lines.append(f"| `{position}` | " + " | ".join(marks) + " |")
    fallbacks = sorted(
        {(r["attention"], r["cross_attention"]) for r in rows if r["cross_attention"] != r["attention"]}
    )
    if fallbacks:
        lines += [""] + [
            f"Cross-attention with `{k}` uses `{c}` (it is a self-attention-only kernel)."
            for k, c in fallbacks
        ]
    return lines


def _family_page(family: str, description: str, members: list[Member]) -> str:
    lines = [
        f"# {family}",
        "",
        f"{description[0].upper()}{description[1:]}." if description else "",
        "",
        f"Pick one in a recipe with `{family}: <name>` under `model.init_args` "
        f"(or `{family}: {{name: <name>, <option>: <value>}}`), in Python with "
        f'`swapformer.build_causal_lm({{"vocab_size": 100, "{family}": "<name>"}})`. '
        f"The [concepts page](../concepts/{_concept_page(family)}) explains the formulas.",
        "",
        "| name | description | source |",
        "|---|---|---|",
    ]
    lines += [
        f"| [`{m.name}`](#{_anchor(m.name)}) | {_cell(m.description)} | `{m.source}` |" for m in members
    ]
    for member in members:
        lines += ["", *_member_section(family, member)]
    return "\n".join(lines) + "\n"


def _member_section(family: str, member: Member) -> list[str]:
    factory = member.factory
    path = f"{factory.__module__}.{factory.__qualname__}"
    lines = [f"## `{member.name}`", "", _sentence(member.description), "", f"Implemented by `{path}`.", ""]
    options = member.options
    if options:
        lines += ["| option | type | default | set by |", "|---|---|---|---|"]
        for name, param in options.items():
            who = "the model (from its config)" if name in _MODEL_SUPPLIED else "you (recipe or mapping)"
            lines.append(f"| `{name}` | {_type(param)} | {_default(param)} | {who} |")
    else:
        lines.append("No options.")
    lines += ["", "```yaml", "model:", "  init_args:", f"    {family}: {_example_spec(member)}", "```"]
    rows = compatibility(family, member.name)
    if rows:
        lines += ["", "**Compatibility**", "", *rows]
    if member.source == "swapformer":
        lines += [
            "",
            '??? note "Docstring"',
            "",
            f"    ::: {path}",
            "        options:",
            "          show_root_heading: false",
            "          show_root_toc_entry: false",
            "          heading_level: 3",
            "          show_bases: false",
            "          members: false",
        ]
    return lines


# What each capability means, in the words of a reader choosing a component (fields of compat.Capabilities).
_CAPABILITIES = {
    "kv_cache": "cached decoding (KV cache) gives the same outputs",
    "padding": "honours padding masks (variable-length batches)",
    "torch_export": "traces with `torch.export`",
    "accepts_score_bias": "adds a positional score bias (ALiBi, T5) to its scores",
    "self_attention_only": "self-attention only",
    "adds_score_bias": "adds a bias to the attention scores",
    "exact_softmax": "exact softmax attention (`swapformer check` holds it to the `math` kernel)",
    "sinks": "takes `sinks: true`, a learned logit per head in the softmax's denominator (GPT-OSS)",
    "layer": "a whole attention layer (its own projections around a kernel)",
    "document_mask": "keeps attention within each document of a packed row (`document_ids`)",
    "document_spans": "takes a packed row's documents as spans and computes no score across documents",
    "relative": "relative: scores unchanged when every position shifts (`swapformer check` tests it)",
}
_FAMILY_CAPABILITIES = {
    "attention": (
        "kv_cache",
        "padding",
        "torch_export",
        "accepts_score_bias",
        "self_attention_only",
        "exact_softmax",
        "sinks",
        "layer",
        "document_mask",
        "document_spans",
    ),
    "positional": ("kv_cache", "padding", "torch_export", "adds_score_bias", "relative"),
}


def compatibility(family: str, name: str) -> list[str]:
    """Markdown lines on what ``family``/``name`` supports and what it combines with (swapformer.compat)."""
    row = next(r for r in compat.capability_rows() if r["family"] == family and r["name"] == name)
    fields = _FAMILY_CAPABILITIES.get(family, ("kv_cache", "padding", "torch_export"))
    lines = ["| capability | supported |", "|---|---|"]
    lines += [f"| {_CAPABILITIES[f]} | {'yes' if row[f] else '**no**'} |" for f in fields]
    if family == "attention" and row["self_attention_only"]:
        lines.append(f"| cross-attention uses instead | `{compat.cross_attention_kernel(name)}` |")
    if row["notes"]:
        lines += ["", f"Note: {_cell(row['notes'])}"]
    key = {"attention": "attention", "positional": "positional"}.get(family)
    if key is not None:
        refused = [r for r in compat.compatibility_rows() if r[key] == name and not r["supported"]]
        partner = "positional" if family == "attention" else "attention"
        if refused:
            lines += ["", f"Refused at config time with {partner}:", ""]
            lines += [f"- `{r[partner]}`: {_cell(r['reason'])}" for r in refused]
        else:
            lines += ["", f"Combines with every {partner} member."]
    else:
        lines += ["", "Combines with every other component."]
    return lines


def _example_spec(member: Member) -> str:
    own = {n: p.default for n, p in member.options.items() if n not in _MODEL_SUPPLIED}
    shown = {n: d for n, d in own.items() if d is not inspect.Parameter.empty and _yaml_scalar(d) is not None}
    if not shown:
        return member.name
    options = ", ".join(f"{n}: {_yaml_scalar(d)}" for n, d in shown.items())
    return f"{{name: {member.name}, {options}}}  # or just: {member.name}"


def _yaml_scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    return None


def _type(param: inspect.Parameter) -> str:
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return "any"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return f"`{text}`".replace("|", "\\|")


def _default(param: inspect.Parameter) -> str:
    if param.default is inspect.Parameter.empty:
        return "required"
    return f"`{param.default!r}`".replace("|", "\\|")


def _sentence(text: str) -> str:
    text = _cell(text)
    return f"{text[:1].upper()}{text[1:]}" + ("" if text.endswith(".") else ".")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(name: str) -> str:
    # the toc extension's slug of a heading "`name`"
    return re.sub(r"[^\w-]", "", name.lower().replace(" ", "-"))


def _concept_page(family: str) -> str:
    return f"{family}.md" if family in ("attention", "positional", "norm", "placement", "ffn") else "index.md"


# ---- recipes -------------------------------------------------------------------------------------------
RECIPES_MARKER = "<!-- recipes: generated by docs/hooks.py -->"


def recipes_markdown(root: Path) -> str:
    """Every YAML under ``root`` (the recipes folder): its path, its opening comment, and the file itself."""
    lines: list[str] = []
    for path in sorted(root.rglob("*.yaml")):
        text = path.read_text()
        relative = path.relative_to(root.parent).as_posix()
        prose, commands = [], []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            body = line[1:].strip()
            (commands if _COMMAND.match(body) else prose).append(body)
        lines += [f"### `{relative}`", "", _plain(" ".join(p for p in prose if p))]
        if commands:
            lines += ["", "```bash", *commands, "```"]
        lines += ["", f'??? example "{relative}"', "", "    ```yaml"]
        lines += [f"    {line}" if line else "" for line in text.splitlines()]
        lines += ["    ```", ""]
    return "\n".join(lines)


_COMMAND = re.compile(r"^(\w+=\S+ )*(swapformer|python3?|torchrun|srun|wandb|pip) ")


def _plain(text: str) -> str:
    """``text`` shown as written: HTML and Markdown emphasis escaped, `code spans` kept."""
    parts = re.split(r"(`[^`]*`)", html.escape(text, quote=False))
    return "".join(p if p.startswith("`") else re.sub(r"([*_\\[\]])", r"\\\1", p) for p in parts)


# ---- formulas --------------------------------------------------------------------------------------------
_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])"
    r"\s*</(?P=tag)>",
    re.S,
)


def mathml(page_html: str) -> str:
    """Replace arithmatex's marked TeX in ``page_html`` with MathML.

    Raises:
        ValueError: a formula latex2mathml cannot read (the build fails on it, naming the formula).
    """

    def replace(match: re.Match[str]) -> str:
        tex = html.unescape(match["inline"] if match["inline"] is not None else match["block"])
        display = "inline" if match["inline"] is not None else "block"
        try:
            converted = convert(tex.strip(), display=display)
        except Exception as err:
            raise ValueError(f"cannot convert the formula {tex!r} to MathML: {type(err).__name__}") from err
        unknown = re.findall(r">(\\[A-Za-z]+)<", converted)  # latex2mathml passes unknown commands through
        if unknown:
            raise ValueError(f"cannot convert the formula {tex!r} to MathML: unknown command {unknown[0]}")
        return converted

    return _MATH.sub(replace, page_html)


# ---- docstrings ----------------------------------------------------------------------------------------
class DocstringDialect(griffe.Extension):
    """Griffe extension (mkdocs.yml, mkdocstrings ``extensions``): the project writes ``Example:`` where
    Google style reads ``Examples:``; without this the doctest lines render as nested quotes."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = re.sub(
                r"^(\s*)Example:[ \t]*$", r"\1Examples:", obj.docstring.value, flags=re.M
            )


# Sphinx roles in docstrings (":class:`~swapformer.X`") are plain code on this site: drop the role and, for
# "~", the module path, as Sphinx shows them.
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*(\w+)</code>")


def sphinx_roles(page_html: str) -> str:
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", page_html))


# ---- MkDocs events ---------------------------------------------------------------------------------------
def on_files(files: Files, config: Any) -> Files:
    for path, content in catalogue_pages().items():
        if files.get_file_from_path(path) is not None:
            raise PluginError(f"docs/{path} is generated from the registries; delete the file on disk")
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if RECIPES_MARKER in markdown:
        root = Path(config["config_file_path"]).parent / "recipes"
        markdown = markdown.replace(RECIPES_MARKER, recipes_markdown(root))
    return markdown


def on_page_content(html_text: str, page: Any, config: Any, files: Files) -> str:
    try:
        return sphinx_roles(mathml(html_text))
    except ValueError as err:
        raise PluginError(f"{page.file.src_uri}: {err}") from err

"""MCP prompts from the files in ``prompts/``: one markdown file per prompt, loaded at start.

A file ``prompts/<name>.md`` is YAML front matter (safe loader), then the body::

    ---
    title: Diagnose a service
    description: What the prompt is for (shown in prompts/list).
    arguments:
      - name: name
        description: The service's registered name.
        required: true
        complete: services          # optional: keys, services, users or roles
      - name: type
        description: Protocol.
        default: http               # an optional argument needs a default
        choices: [http, grpc, tcp]  # optional: only these values (and their completions)
    ---
    Body text naming the tools to call; {name} is replaced by the argument.

Argument values are data, never instructions: a placeholder alone on its line becomes a fenced code
block, one inside a line an inline code span, each delimited by a backtick run longer than any in the
value, so no value can end its fence and pose as prompt text. ``{{name}}`` writes a literal ``{name}``.
Any other ``{word}`` is refused at load (it would be a typo), as is anything else malformed, with the
file's path in the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, Prompt, PromptArgument
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, InputRequiredResult
from pydantic import BaseModel, ConfigDict, Field, InstanceOf, ValidationError, model_validator

from ..errors import KkEtcdError

CompletionKind = Literal["keys", "services", "users", "roles"]

_NAME = r"[a-z][a-z0-9_]*"
_PROMPT_NAME = re.compile(rf"^{_NAME}$")
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")
_ALONE = re.compile(r"^\s*\{([A-Za-z_]\w*)\}\s*$")
_BACKTICKS = re.compile(r"`+")


class PromptFileError(KkEtcdError):
    """A prompt file is malformed; the server does not start with a broken prompt."""


class ArgumentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=rf"^{_NAME}$")
    description: str = Field(min_length=1)
    required: bool = False
    default: str | None = None
    choices: list[str] | None = Field(default=None, min_length=1)
    complete: CompletionKind | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ArgumentSpec:
        if self.required and self.default is not None:
            raise ValueError(f"argument {self.name!r} is required, so it cannot have a default")
        if not self.required and self.default is None:
            raise ValueError(f"optional argument {self.name!r} needs a default")
        if self.choices is not None and self.default is not None and self.default not in self.choices:
            raise ValueError(f"the default of argument {self.name!r} is not one of its choices")
        if self.choices is not None and self.complete is not None:
            raise ValueError(f"argument {self.name!r}: choices already say what completes; drop `complete`")
        return self


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    arguments: list[ArgumentSpec] = Field(default_factory=list)


class PromptArgumentsError(ValueError):
    """The arguments of a prompts/get do not fit the prompt."""


def _fence(value: str, minimum: int) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    return "`" * max(minimum, longest + 1)


def as_code_block(value: str) -> str:
    fence = _fence(value, 3)
    return f"{fence}text\n{value}\n{fence}"


def as_code_span(value: str) -> str:
    fence = _fence(value, 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    name: str
    title: str
    description: str
    arguments: tuple[ArgumentSpec, ...]
    body: str
    source: Path

    def argument(self, name: str) -> ArgumentSpec | None:
        return next((a for a in self.arguments if a.name == name), None)

    def resolve(self, given: Mapping[str, str]) -> dict[str, str]:
        """Every argument's value (defaults filled in); unknown, missing or off-choice values are refused."""
        known = {a.name for a in self.arguments}
        unknown = sorted(set(given) - known)
        if unknown:
            expected = ", ".join(sorted(known)) or "none"
            raise PromptArgumentsError(
                f"prompt {self.name} has no argument {', '.join(unknown)}; its arguments: {expected}"
            )
        missing = [a.name for a in self.arguments if a.required and not given.get(a.name)]
        if missing:
            raise PromptArgumentsError(f"prompt {self.name} needs the argument {', '.join(missing)}")
        values: dict[str, str] = {}
        for arg in self.arguments:
            value = given.get(arg.name) or arg.default or ""
            if arg.choices is not None and value not in arg.choices:
                raise PromptArgumentsError(
                    f"argument {arg.name} of prompt {self.name} must be one of {', '.join(arg.choices)}, not {value!r}"
                )
            values[arg.name] = value
        return values

    def render(self, given: Mapping[str, str]) -> str:
        values = self.resolve(given)
        lines = []
        for line in self.body.splitlines():
            alone = _ALONE.match(line)
            if alone:
                lines.append(as_code_block(values[alone.group(1)]))
            else:
                lines.append(_PLACEHOLDER.sub(lambda m: _inline(m, values), line))
        return "\n".join(lines).strip() + "\n"


def _inline(match: re.Match[str], values: Mapping[str, str]) -> str:
    literal, name = match.groups()
    return "{" + literal + "}" if literal is not None else as_code_span(values[name])


# Loading -----------------------------------------------------------------------------------------------


def default_prompts_dir() -> Path:
    """``prompts/`` as package data of an installed wheel, else at the root of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "prompts"
    return installed if installed.is_dir() else package.parent / "prompts"


def _split(text: str) -> tuple[str, str]:
    if not text.startswith("---\n"):
        raise ValueError("it must start with a '---' line opening the YAML front matter")
    front, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError("its front matter is not closed by a '---' line")
    return front, body


def _front_matter(raw: str) -> FrontMatter:
    try:
        data: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"its front matter is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("its front matter must be a YAML mapping (title, description, arguments)")
    try:
        return FrontMatter.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'front matter'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"its front matter is invalid: {problems}") from None


def _check_body(body: str, arguments: Sequence[ArgumentSpec]) -> None:
    if not body.strip():
        raise ValueError("its body is empty")
    names = [a.name for a in arguments]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"argument {', '.join(duplicates)} is declared twice")
    used = {m.group(2) for m in _PLACEHOLDER.finditer(body) if m.group(2)}
    undeclared = sorted(used - set(names))
    if undeclared:
        raise ValueError(
            f"its body uses {', '.join('{' + n + '}' for n in undeclared)}, which is not a declared argument "
            "(write {{name}} for a literal brace)"
        )
    unused = [n for n in names if n not in used]
    if unused:
        raise ValueError(f"argument {', '.join(unused)} is declared but never used in the body")


def load_prompt_file(path: Path) -> PromptTemplate:
    try:
        if not _PROMPT_NAME.match(path.stem):
            raise ValueError("its name must be lowercase letters, digits and '_', starting with a letter")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"it cannot be read: {exc}") from None
        front_raw, body = _split(text.replace("\r\n", "\n"))
        front = _front_matter(front_raw)
        _check_body(body, front.arguments)
    except ValueError as exc:
        raise PromptFileError(f"prompt file {path} is malformed: {exc}") from None
    return PromptTemplate(
        name=path.stem,
        title=front.title,
        description=front.description.strip(),
        arguments=tuple(front.arguments),
        body=body,
        source=path,
    )


def load_prompts(directory: Path) -> list[PromptTemplate]:
    """Every ``*.md`` prompt in ``directory``, sorted by name."""
    if not directory.is_dir():
        raise PromptFileError(f"prompts directory {directory} does not exist; the installation is incomplete")
    return [load_prompt_file(path) for path in sorted(directory.glob("*.md"))]


# Registering with MCPServer ------------------------------------------------------------------------------


class TemplatePrompt(Prompt):
    """A Prompt whose argument problems reach the client as a clear invalid-params error.

    MCPServer's own check raises ValueError, which a client sees only as "Internal server error".
    """

    template: InstanceOf[PromptTemplate] = Field(exclude=True)

    async def render(self, arguments: dict[str, Any] | None, context: Any) -> list[Message] | InputRequiredResult:
        try:
            self.template.resolve({k: str(v) for k, v in (arguments or {}).items()})
        except PromptArgumentsError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        return await super().render(arguments, context)


def as_prompt(template: PromptTemplate) -> TemplatePrompt:
    async def render(**arguments: str) -> str:
        return template.render(arguments)

    return TemplatePrompt(
        name=template.name,
        title=template.title,
        description=template.description,
        arguments=[
            PromptArgument(name=a.name, description=_describe(a), required=a.required) for a in template.arguments
        ],
        fn=render,
        context_kwarg=None,
        template=template,
    )


def _describe(arg: ArgumentSpec) -> str:
    extra = []
    if arg.choices is not None:
        extra.append(f"one of {', '.join(arg.choices)}")
    if arg.default is not None:
        extra.append(f"default {arg.default}")
    return f"{arg.description.strip()} ({'; '.join(extra)})" if extra else arg.description.strip()


def register_prompts(server: MCPServer, templates: Sequence[PromptTemplate]) -> None:
    for template in templates:
        server.add_prompt(as_prompt(template))

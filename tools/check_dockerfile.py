"""Project rules for the Dockerfile, and the build context it would see, without a container engine.

Used by tools/check-dockerfile.sh:

    python3 tools/check_dockerfile.py policy Dockerfile      # exit 1 and one line per broken rule
    python3 tools/check_dockerfile.py context Dockerfile DIR # copy what the builder stage COPYs into DIR
    python3 tools/check_dockerfile.py install-args Dockerfile  # what the builder's pip install installs

`policy` checks what hadolint does not know about this project: a multi-stage build, every base image
pinned to a tag other than `latest`, a numeric non-root USER in the final stage (Kubernetes' runAsNonRoot
can only verify a numeric one), no ENTRYPOINT (executor Jobs override the command), a CMD, and a final
stage that never writes bytecode (read-only root filesystem).

`context` reproduces `COPY <src>... <dest>` of the stages that copy from the build context, honouring
.dockerignore, so that the replay installs exactly the files an image build would. `install-args` prints,
one a line, what the builder stage's `pip install` installs (`./handlers`, `./[kafka]`), so that the replay
installs the same requirements, extras included, instead of a copy of them that could drift.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, arguments = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def _image_of(from_arguments: str) -> str:
    words = [word for word in from_arguments.split() if not word.startswith("--")]
    return words[0] if words else ""


def policy_problems(text: str) -> list[str]:
    instructions = parse(text)
    found = stages(instructions)
    problems: list[str] = []
    if len(found) < 2:
        problems.append("not a multi-stage build: expected a builder stage and a final stage")
    stage_names = {
        words[-1].lower()
        for stage in found
        if len(words := stage[0].arguments.split()) >= 3 and words[-2].upper() == "AS"
    }
    for stage in found:
        image = _image_of(stage[0].arguments)
        if image.lower() in stage_names or image == "scratch":
            continue
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:  # no tag at all (the colon belonged to a registry port)
            problems.append(f"line {stage[0].line}: base image {image!r} has no tag")
        elif tag == "latest":
            problems.append(f"line {stage[0].line}: base image {image!r} uses the 'latest' tag")
    if not found:
        return problems
    final = found[-1]
    users = [instruction for instruction in final if instruction.keyword == "USER"]
    if not users:
        problems.append("final stage sets no USER: the image would run as root")
    else:
        user = users[-1].arguments
        if not re.fullmatch(r"\d+(:\d+)?", user):
            problems.append(f"line {users[-1].line}: USER {user!r} is not numeric (uid or uid:gid)")
        elif int(user.split(":")[0]) == 0:
            problems.append(f"line {users[-1].line}: USER {user!r} is root")
    if any(instruction.keyword == "ENTRYPOINT" for instruction in final):
        problems.append("final stage sets an ENTRYPOINT: executor Jobs replace the command, keep it CMD-only")
    if not any(instruction.keyword == "CMD" for instruction in final):
        problems.append("final stage has no CMD (expected the operator: cronlet operator)")
    env_text = " ".join(instruction.arguments for instruction in final if instruction.keyword == "ENV")
    if not re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env_text):
        problems.append("final stage does not set PYTHONDONTWRITEBYTECODE=1 (read-only root filesystem)")
    for instruction in instructions:
        is_pip_install = instruction.keyword == "RUN" and re.search(
            r"\bpip3? install\b", instruction.arguments
        )
        if is_pip_install and "--no-cache-dir" not in instruction.arguments:
            problems.append(f"line {instruction.line}: pip install without --no-cache-dir")
        if instruction.keyword == "ADD" and re.search(r"https?://", instruction.arguments):
            problems.append(f"line {instruction.line}: ADD of a URL; fetch in a RUN step with a checksum")
    return problems


def context_sources(text: str) -> list[str]:
    """Sources of COPY instructions that read the build context (not `--from=` another stage)."""
    sources: list[str] = []
    for instruction in parse(text):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        words = instruction.arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def pip_install_targets(text: str) -> list[str]:
    """What the `RUN pip install` of the first stage installs: its arguments without options, unquoted.

    One pip install in that stage is expected (the replay repeats exactly one); more, or none, is an error.
    Options are dropped, so an option that takes a value (`-r FILE`, `--index-url URL`) is not supported.
    """
    found = stages(parse(text))
    runs = [
        instruction.arguments
        for instruction in (found[0] if found else [])
        if instruction.keyword == "RUN" and re.search(r"\bpip3? install\b", instruction.arguments)
    ]
    if len(runs) != 1:
        raise ValueError(f"expected one RUN pip install in the builder stage, found {len(runs)}")
    words = shlex.split(runs[0])
    if "&&" in words or ";" in words or "|" in words:
        raise ValueError(f"the builder's pip install is chained with another command: {runs[0]!r}")
    after = words[words.index("install") + 1 :]
    return [word for word in after if not word.startswith("-")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(out)


def ignore_rules(dockerignore: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent matches its contents."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def build_context(*, dockerfile: Path, root: Path, destination: Path) -> list[str]:
    """Copy each context source into destination (relative layout kept); return what was copied."""
    ignore_file = root / ".dockerignore"
    rules = ignore_rules(ignore_file.read_text()) if ignore_file.exists() else []
    copied: list[str] = []
    for source in context_sources(dockerfile.read_text()):
        base = (root / source).resolve()
        if not base.exists():
            raise FileNotFoundError(f"COPY source {source!r} does not exist in {root}")
        candidates = [base] if base.is_file() else sorted(path for path in base.rglob("*") if path.is_file())
        for path in candidates:
            relative = path.relative_to(root.resolve()).as_posix()
            if is_ignored(relative, rules):
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(relative)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    policy = commands.add_parser("policy", help="check the project's Dockerfile rules")
    policy.add_argument("dockerfile", type=Path)
    context = commands.add_parser("context", help="copy the build context the Dockerfile COPYs")
    context.add_argument("dockerfile", type=Path)
    context.add_argument("destination", type=Path)
    install = commands.add_parser("install-args", help="print what the builder's pip install installs")
    install.add_argument("dockerfile", type=Path)
    args = parser.parse_args(argv)

    if args.command == "policy":
        problems = policy_problems(args.dockerfile.read_text())
        for problem in problems:
            print(f"{args.dockerfile}: {problem}")
        return 1 if problems else 0
    if args.command == "install-args":
        try:
            targets = pip_install_targets(args.dockerfile.read_text())
        except ValueError as error:
            print(f"{args.dockerfile}: {error}", file=sys.stderr)
            return 1
        print("\n".join(targets))
        return 0
    root = args.dockerfile.resolve().parent
    try:
        copied = build_context(dockerfile=args.dockerfile, root=root, destination=args.destination)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{len(copied)} files copied into {args.destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

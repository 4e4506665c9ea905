"""The phone numbers the README and the development stack's hints offer as examples are ones the
phone library accepts: a reader who copies one gets a contact, not a refusal."""

import re
from pathlib import Path

import phonenumbers
import pytest

ROOT = Path(__file__).parents[2]
NUMBER = re.compile(r"\+\d[\d ()-]{6,}\d")


def example_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / ".env.example", *(ROOT / "docs").glob("**/*.md")]
    files += (ROOT / "devstack").glob("**/*.py")
    return [path for path in files if path.is_file()]


def examples() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(ROOT)), number)
        for path in example_files()
        for number in NUMBER.findall(path.read_text())
    ]


def test_there_are_examples_to_check():
    files = {name for name, _number in examples()}
    assert {"README.md", "devstack/stack.py", "devstack/management/commands/sandbox_inbound.py"} <= files


@pytest.mark.parametrize(("file", "number"), examples())
def test_each_example_number_is_valid(file, number):
    assert phonenumbers.is_valid_number(phonenumbers.parse(number)), f"{file}: {number}"

"""The strict parsers (habitto_chat/parsing.py) shared by settings, API parameters and
the server's entry point: one vocabulary, one digit limit, errors instead of guesses."""

import pytest

from habitto_chat import parsing


@pytest.mark.parametrize("text, expected", [("0", 0), ("42", 42), ("0" * 19 + "1", 1), (str(2**63 - 1), 2**63 - 1)])
def test_parse_int_accepts_ascii_digits(text, expected):
    assert parsing.parse_int(text) == expected


@pytest.mark.parametrize("text", ["", " ", " 7", "7\n", "-1", "+1", "1_000", "1.0", "1e3", "abc", "²", "٣", "1" * 21, "9" * 5000])
def test_parse_int_refuses_everything_else(text):
    with pytest.raises(ValueError):
        parsing.parse_int(text)


def test_parse_int_checks_the_range():
    assert parsing.parse_int("5", 1, 5) == 5
    with pytest.raises(ValueError, match="less than 1"):
        parsing.parse_int("0", 1, 5)
    with pytest.raises(ValueError, match="more than 5"):
        parsing.parse_int("6", 1, 5)


@pytest.mark.parametrize("text", ["1", "true", "YES", " On "])
def test_parse_bool_true(text):
    assert parsing.parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "False", "no", "OFF"])
def test_parse_bool_false(text):
    assert parsing.parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "y", "t", "enabled"])
def test_parse_bool_refuses_other_words(text):
    with pytest.raises(ValueError, match="not a boolean"):
        parsing.parse_bool(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "abc", ""])
def test_parse_float_refuses_non_finite_and_garbage(text):
    with pytest.raises(ValueError):
        parsing.parse_float(text)


def test_parse_float_minimum():
    assert parsing.parse_float("0.5", 0.1) == 0.5
    with pytest.raises(ValueError):
        parsing.parse_float("0.05", 0.1)


def test_parse_ports():
    assert parsing.parse_ports("8000, 8001,") == [8000, 8001]
    assert parsing.parse_ports("65535") == [65535]


@pytest.mark.parametrize("text", ["", ",", "0", "65536", "80a", "-1", "8000,x"])
def test_parse_ports_refuses(text):
    with pytest.raises(ValueError):
        parsing.parse_ports(text)


def test_parsing_imports_no_django():
    """Settings import it before Django is configured."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(parsing.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"datetime", "json", "math"}  # the standard library only

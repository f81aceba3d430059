"""The starter templates shipped in templates/*.yaml, loaded through the same loader as user files."""

from __future__ import annotations

from importlib.resources import files

from snapbridge.errors import InvalidInput
from snapbridge.workflows.loader import load_workflow
from snapbridge.workflows.model import Workflow

__all__ = ["load_template", "load_templates", "template_names", "template_text"]


def template_names() -> tuple[str, ...]:
    folder = files("snapbridge.workflows") / "templates"
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")))


def template_text(name: str) -> str:
    """The YAML text of a starter template, or InvalidInput naming the known ones."""
    if name not in template_names():
        raise InvalidInput(f"unknown template {name!r}; known templates: {', '.join(template_names())}")
    return (files("snapbridge.workflows") / "templates" / f"{name}.yaml").read_text(encoding="utf-8")


def load_template(name: str) -> Workflow:
    return load_workflow(template_text(name), f"{name}.yaml")


def load_templates() -> tuple[Workflow, ...]:
    return tuple(load_template(name) for name in template_names())

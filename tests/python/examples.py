"""Checks that every example in an OpenAPI document is valid against the schema it illustrates.

Usage: python3 examples.py openapi.json
Schema examples (`components.schemas.*.example`) and media-type examples (`examples.*.value`) are
validated with JSON Schema 2020-12 (OpenAPI 3.1's dialect), `$ref`s resolved inside the document.
Prints how many were checked; exits 1 naming each example that does not validate.
"""

import json
import sys

from jsonschema import Draft202012Validator

spec = json.load(open(sys.argv[1]))
components = spec["components"]


def validator(schema):
    # The document itself is the root resource, so "#/components/schemas/X" resolves.
    return Draft202012Validator({**schema, "components": components})


failures, checked = [], 0
for name, schema in components["schemas"].items():
    if "example" in schema:
        checked += 1
        for error in validator(schema).iter_errors(schema["example"]):
            failures.append(f"schema {name}: {error.message}")
for path, item in spec["paths"].items():
    for method, operation in item.items():
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, answer) for status, answer in operation["responses"].items()]
        for where, body in bodies:
            for media, content in body.get("content", {}).items():
                for label, example in content.get("examples", {}).items():
                    checked += 1
                    for error in validator(content["schema"]).iter_errors(example["value"]):
                        failures.append(f"{method.upper()} {path} {where} {media} {label!r}: {error.message}")
print(f"{checked} examples checked")
if failures:
    sys.exit("\n".join(failures))

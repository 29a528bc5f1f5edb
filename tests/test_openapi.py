"""The OpenAPI 3.1 description that ships in the package: valid, complete, and true of a live
server (a schemathesis run)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from openapi_spec_validator import validate
from twisted.trial.unittest import SynchronousTestCase

from .scenarios import outcome

ALL_CHECKS = ["allow_header_conformance", "content_type_conformance",
              "ensure_resource_availability", "ignored_auth", "missing_required_header",
              "negative_data_rejection", "not_a_server_error", "object_level_authorization",
              "positive_data_acceptance", "response_headers_conformance",
              "response_schema_conformance", "status_code_conformance", "unsupported_method",
              "use_after_free"]


def description() -> dict[str, Any]:
    """The shipped description, read as an installed package's data would be."""
    text = resources.files("serverapi").joinpath("openapi.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class DescriptionTests(SynchronousTestCase):
    """The document itself."""

    def test_valid(self) -> None:
        """openapi-spec-validator accepts it as OpenAPI 3.1."""
        document = description()
        self.assertEqual(document["openapi"], "3.1.0")
        validate(document)

    def test_version(self) -> None:
        """It describes this release."""
        import serverapi

        self.assertEqual(description()["info"]["version"], serverapi.__version__)

    def test_three_paths_every_status(self) -> None:
        """Exactly the three paths, each a POST with its errors and a CORS preflight."""
        paths = description()["paths"]
        self.assertEqual(sorted(paths), ["/communicate", "/login", "/logout"])
        expected = {
            "/login": {"200", "400", "401", "403", "408", "413", "415", "429", "431", "500",
                       "503"},
            "/logout": {"200", "400", "401", "403", "408", "413", "415", "431", "500"},
            "/communicate": {"200", "400", "401", "403", "408", "413", "415", "431", "500",
                             "503"},
        }
        for path, statuses in expected.items():
            self.assertEqual(sorted(paths[path]), ["options", "post"])
            self.assertEqual(set(paths[path]["post"]["responses"]), statuses, path)
            self.assertEqual(set(paths[path]["options"]["responses"]), {"204", "403", "405"})

    def test_cookie_and_bodies(self) -> None:
        """The session cookie is the security scheme of /logout and /communicate; bodies are
        JSON."""
        document = description()
        self.assertEqual(document["components"]["securitySchemes"]["sessionCookie"],
                         {**document["components"]["securitySchemes"]["sessionCookie"],
                          "type": "apiKey", "in": "cookie", "name": "sessionToken"})
        paths = document["paths"]
        self.assertNotIn("security", paths["/login"]["post"])
        for path in ("/logout", "/communicate"):
            self.assertEqual(paths[path]["post"]["security"], [{"sessionCookie": []}])
        self.assertEqual(paths["/login"]["post"]["requestBody"]["content"]["application/json"]
                         ["schema"], {"$ref": "#/components/schemas/LoginRequest"})
        self.assertIn("Set-Cookie", paths["/login"]["post"]["responses"]["200"]["headers"])


class SchemathesisTests(SynchronousTestCase):
    """schemathesis against a live ThreadedAPIServer (in a child process)."""

    def test_no_failure(self) -> None:
        """Every check, 25 derandomized examples per operation: no failure, and the run
        reached real successes (logins, callbacks, logouts, preflights)."""
        result = outcome(self, "tests.operating_scenarios", "schemathesis_run")
        self.assertEqual(result["returncode"], 0, result["output"])
        self.assertEqual(result["checks"], ALL_CHECKS)
        statuses = result["statuses"]
        for reached in ("POST /communicate 200", "POST /logout 200", "OPTIONS /login 204",
                        "POST /login 400", "POST /communicate 401", "GET /login 405",
                        "POST /login 415"):
            self.assertIn(reached, statuses)

"""Registers a seed-000 user through a client generated from /openapi.json by openapi-python-client.

Usage: python3 generated_client.py CLIENT_DIR BASE_URL API_KEY
CLIENT_DIR holds the generated package (`openapi-python-client generate --meta none`). Prints the
registered user as JSON; exits non-zero when the call or the parsed answer is not what the
document promised.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

from client import AuthenticatedClient  # noqa: E402  (generated, importable only now)
from client.api.seed_000_partner_users import register_partner_user  # noqa: E402
from client.models.auth_method import AuthMethod  # noqa: E402
from client.models.register_partner_user import RegisterPartnerUser  # noqa: E402
from client.models.registered_user import RegisteredUser  # noqa: E402
from client.models.user_type import UserType  # noqa: E402

base_url, api_key = sys.argv[2], sys.argv[3]
api = AuthenticatedClient(base_url=base_url, token=api_key, prefix="", auth_header_name="PartnerApiKey")
body = RegisterPartnerUser(
    external_user_id="91b95244-72ca-459e-88d2-281c3e2935c1",
    method=AuthMethod.EMAIL,
    identifier="money@capa.fi",
    type_=UserType.INDIVIDUAL,
    alias="Satoshi Nakamoto",
)
with api:
    answer = register_partner_user.sync_detailed(client=api, body=body, idempotency_key="generated-client-1")
if answer.status_code != 201 or not isinstance(answer.parsed, RegisteredUser):
    sys.exit(f"expected 201 RegisteredUser, got {answer.status_code}: {answer.content!r}")
print(json.dumps(answer.parsed.to_dict()))

"""Secrets written the way providers, proxies and SDK reprs echo them: one per hole.

Shared by ``test_redact_holes.py`` (every output surface) and the verdict snapshot.
"""

from __future__ import annotations

BEARER = "AbCdEf0123456789ghIJ"  # 20 chars: too short for the long-token rule
BASIC = "dXNlcjpzM2NyZXRQYXNz"  # base64("user:s3cretPass")
URL_PASSWORD = "pw0rdInUrl9x"
SAS_SIG = "Xy9zAbC%2Bk3Q%3Dsig"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
AWS_KEY_ID = "AKIAIOSFODNN7QWERTY1"
COOKIE = "sess4f9a2b7c1d"
PASSPHRASE = "correct-horse-battery"
AUTH_PARAM = "q8w7e6r5t4y3"
SPLIT_KEY = "sk-proj-Zw9x8\u200bc7v6b5n4m3l2k1j0h"

#: (secret as it must never appear, text a provider would send around it)
HOLES: dict[str, tuple[str, str]] = {
    "authorization_bearer": (BEARER, f"proxy echoed Authorization: Bearer {BEARER}"),
    "authorization_basic": (BASIC, f"upstream said 'Authorization': 'Basic {BASIC}'"),
    "url_userinfo": (URL_PASSWORD, f"via https://agent:{URL_PASSWORD}@proxy.example.com/v1"),
    "azure_sas_sig": (
        SAS_SIG,
        f"GET https://acct.blob.core.windows.net/a/b.wav?sv=2022-11-02&sp=r&sig={SAS_SIG}",
    ),
    "aws_secret_with_slash": (AWS_SECRET, f"signing with {AWS_SECRET} failed"),
    "aws_key_id": (AWS_KEY_ID, f"access key {AWS_KEY_ID} is disabled"),
    "cookie": (COOKIE, f"Cookie: session={COOKIE}; theme=dark"),
    "passphrase": (PASSPHRASE, f"key file passphrase={PASSPHRASE} rejected"),
    "auth_param": (AUTH_PARAM, f"GET /v1/speak?auth={AUTH_PARAM}&model=aura"),
    "zero_width_split_key": (SPLIT_KEY.replace("\u200b", ""), f"Incorrect API key {SPLIT_KEY}"),
}

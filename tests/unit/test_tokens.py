"""Tokens issued to users while the services run, on SQLite and on PostgreSQL: a token acts for its user alone, the
ledger keeps only its digest, revoking or forgetting the user ends it, and `agentmem token` does all of it from the
command line without the model."""

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agentmem import cli
from agentmem.serving.auth import TokenMap, Unauthorized, issue
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import TOKENS, Ledger


def test_an_issued_token_acts_for_its_user_until_revoked_and_is_kept_only_as_a_digest(ledger):
    carol, dave = issue(ledger, "carol"), issue(ledger, "dave")
    assert carol["token"] != dave["token"] and len(carol["token"]) > 40
    tokens = TokenMap({"operator-token-0123456789": "*"}, issued=ledger.token_user)
    assert tokens.user_of(carol["token"]) == "carol" and tokens.user_of(dave["token"]) == "dave"
    assert tokens.user_of("operator-token-0123456789") is None  # the settings' tokens still act
    with ledger.engine.connect() as conn:
        kept = [str(v) for row in conn.execute(select(TOKENS)) for v in row]
    assert not any(carol["token"] in v or dave["token"] in v for v in kept)
    assert [(t["id"], t["user_id"]) for t in ledger.tokens()] == [(carol["id"], "carol"), (dave["id"], "dave")]
    assert [t["id"] for t in ledger.tokens("carol")] == [carol["id"]]

    assert ledger.drop_token(carol["id"], "dave") is None  # not dave's to revoke
    assert ledger.drop_token(carol["id"]) == "carol"
    with pytest.raises(Unauthorized):
        tokens.user_of(carol["token"])
    for forged in (carol["token"][:-1], "amt_" + "x" * 43, "", dave["token"] + " "):
        with pytest.raises(Unauthorized):
            tokens.user_of(forged)
    with ledger.transaction():
        ledger.drop_user("dave")  # forgetting a user ends their tokens too
    with pytest.raises(Unauthorized):
        tokens.user_of(dave["token"])
    assert ledger.tokens() == []


def test_the_command_line_issues_lists_and_revokes_tokens_without_the_model(tmp_path):
    run = CliRunner()
    home = ["--home", str(tmp_path)]
    made = run.invoke(cli.app, ["token", "create", "carol", *home, "--json"])
    assert made.exit_code == 0, made.output
    token = json.loads(made.output)
    plain = run.invoke(cli.app, ["token", "create", "carol", *home])
    assert plain.exit_code == 0 and plain.output.splitlines()[0].startswith("amt_")  # the token alone on line one
    listed = json.loads(run.invoke(cli.app, ["token", "list", *home, "--user", "carol", "--json"]).output)
    assert len(listed) == 2 and token["id"] in {t["id"] for t in listed}
    assert all("token" not in t for t in listed)
    assert run.invoke(cli.app, ["token", "revoke", token["id"], *home]).exit_code == 0
    ledger = Ledger.open(Layout(tmp_path))
    assert TokenMap({}, issued=ledger.token_user).issued_user(token["token"]) is None
    ledger.close()

    for args, says in ((["token", "revoke", token["id"]], "no token with id"),
                       (["token", "create", "not a user id"], "must match")):
        r = run.invoke(cli.app, [*args, *home])
        assert r.exit_code == 1 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1

from tests.e2e.conftest import Process, Sidecar
from tests.kube import KubeApi, condition
from tests.servers.slack import SlackTestServer


def test_smoke(kube: KubeApi, slack: SlackTestServer, operator: Process, sidecar: Sidecar) -> None:
    slack.add_token("xoxb-smoke-token-123456")
    alice = slack.add_user("alice@example.com")
    slack.add_channel("sre")
    kube.create_secret("team-sre", "slack-bot", {"token": "xoxb-smoke-token-123456"})
    kube.create_reconcile({
        "apiVersion": "reconciler.dev/v1alpha1", "kind": "Reconcile",
        "metadata": {"name": "smoke", "namespace": "team-sre"},
        "spec": {"integration": "slack-usergroups", "credentials": {"secretRef": {"name": "slack-bot"}},
                 "slackUsergroups": {"apiUrl": slack.api_url, "usergroups": [
                     {"handle": "sre-oncall", "name": "SRE", "users": ["alice@example.com"], "channels": ["sre"]}]}},
    })
    try:
        obj = kube.wait_for("team-sre", "smoke", lambda o: condition(o, "Ready").get("status") == "True", 30)
    finally:
        print(operator.log()[-6000:])
    print(obj["status"])
    assert slack.usergroup("sre-oncall")["users"] == [alice]

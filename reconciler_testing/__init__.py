"""Local Slack Web API and GitLab REST v4 servers, packaged so `make demo` can run them outside tests/."""

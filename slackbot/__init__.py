"""slackbot: a Claude assistant that lives in Slack."""

# Secrets Manager: the pseudonym key (collector) and the API tokens / JWT secret (viewer).
# Values are generated once; replace them out of band with `aws secretsmanager put-secret-value`
# (Terraform ignores later changes). The state holds the generated values: keep it encrypted.

locals {
  # Rotating the pseudonym key changes every viewer id; API tokens are rotated by adding a new
  # token next to the old one. Both are planned, manual operations, not scheduled rotations.
  secret_specs = {
    pseudonym_key = "HMAC-SHA256 key of the pseudonyms (LVP_PSEUDONYM_KEY)"
    api_tokens    = "Bearer tokens of the viewer API, comma-separated (LVP_API_TOKENS)"
    jwt_secret    = "HS256 secret of API JWTs and SSE tickets (LVP_JWT_SECRET)"
  }
}

resource "random_password" "secret" {
  for_each = local.secret_specs

  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotating the pseudonym key re-keys every viewer id and API tokens are rotated by adding tokens; both are deliberate manual operations (docs/deploy.md), not scheduled Lambda rotations.
  for_each = local.secret_specs

  name_prefix             = "${var.name}/${each.key}-"
  description             = each.value
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each = local.secret_specs

  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = random_password.secret[each.key].result

  lifecycle {
    ignore_changes = [secret_string]
  }
}

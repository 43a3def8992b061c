# The tables of lvp/tables.py (the single definition; tests/test_terraform.py checks that
# keys, attributes, the GSI and the TTL attribute here equal table_definitions()).

resource "aws_dynamodb_table" "profiles" {
  name                        = "${var.name}-viewer_profiles"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "viewer_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "viewer_id"
    type = "S"
  }

  attribute {
    name = "active_shard"
    type = "S"
  }

  attribute {
    name = "last_seen_ms"
    type = "N"
  }

  global_secondary_index {
    name            = "active-index"
    hash_key        = "active_shard"
    range_key       = "last_seen_ms"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "history" {
  name                        = "${var.name}-viewer_history"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "viewer_id"
  range_key                   = "seq"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "viewer_id"
    type = "S"
  }

  attribute {
    name = "seq"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

# Shared state of the viewer processes: the privacy budget of /api/public/stats and used SSE
# tickets (lvp/tables.py viewer_state_table).
resource "aws_dynamodb_table" "viewer_state" {
  name                        = "${var.name}-viewer_state"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

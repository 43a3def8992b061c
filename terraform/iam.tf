# Least-privilege task roles: each service may touch only its own topics, group and tables.
# (Execution roles — image pull, logs, own secrets — are in modules/ecs_service.)

locals {
  topic_arns = { for k, t in var.topics : k => "${local.msk_topic_arn_prefix}/${t}" }
  table_arns = {
    profiles = aws_dynamodb_table.profiles.arn
    history  = aws_dynamodb_table.history.arn
  }
  table_and_index_arns = concat(values(local.table_arns), [for a in values(local.table_arns) : "${a}/index/*"])
}

# collector: produce enriched events and bad rows.
data "aws_iam_policy_document" "collector" {
  statement {
    sid       = "ConnectIdempotentProducer"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }

  statement {
    sid       = "ProduceGoodAndBad"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [local.topic_arns["good"], local.topic_arns["bad"]]
  }
}

# profiles: consume good events (group), read the changes topic for erasure tombstones (its
# erasure reader, group <consumer_group>-erasures, assigned partitions, never committed), write
# profiles/history, publish changes and bad rows.
data "aws_iam_policy_document" "profiles" {
  statement {
    sid       = "ConnectIdempotentProducer"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }

  statement {
    sid       = "ConsumeGoodAndErasures"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [local.topic_arns["good"], local.topic_arns["changes"]]
  }

  statement {
    sid       = "PublishChangesAndBadRows"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [local.topic_arns["changes"], local.topic_arns["bad"]]
  }

  statement {
    sid     = "ConsumerGroupAndErasureReaderGroup"
    actions = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = [
      "${local.msk_group_arn_prefix}/${var.consumer_group}",
      "${local.msk_group_arn_prefix}/${var.consumer_group}-erasures",
    ]
  }

  # What profiles/store.py calls: loads (BatchGetItem), flushes (BatchWriteItem), the erasure's
  # forget (Query the history, PutItem the marker / DeleteItem), the start-up table check
  # (DescribeTable), `--rebuild` (Scan). GetItem and Query also serve `lvp profile` run in a task.
  statement {
    sid = "ProfilesAndHistoryReadWrite"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:PutItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
    ]
    resources = local.table_and_index_arns
  }
}

# viewer: read the changes topic in full (assigned partitions, random group ids that are never
# committed) and read profiles/history.
data "aws_iam_policy_document" "viewer" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect"]
    resources = [local.msk_cluster_arn]
  }

  statement {
    sid       = "ReadChanges"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [local.topic_arns["changes"]]
  }

  # (MSK lists AlterGroup among the actions ReadData needs; the groups are the viewer's own)
  statement {
    sid       = "OwnReaderGroups"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = ["${local.msk_group_arn_prefix}/lvp-viewer-*"]
  }

  # viewer/profiles_api.py: GetItem (a profile) and Query (a history); the live list comes from
  # the changes topic, never from the index.
  statement {
    sid       = "ProfileRead"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.profiles.arn]
  }

  statement {
    sid       = "HistoryRead"
    actions   = ["dynamodb:Query"]
    resources = [aws_dynamodb_table.history.arn]
  }

  statement {
    sid       = "ViewerStateReadWrite"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.viewer_state.arn]
  }
}

# topics job: create (and describe) the three topics, and set the changes topic's retention
# (cleanup.policy=compact,delete, retention.ms) on an existing one.
data "aws_iam_policy_document" "topics" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [local.msk_cluster_arn]
  }

  statement {
    sid       = "CreateTopics"
    actions   = ["kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration"]
    resources = values(local.topic_arns)
  }

  statement {
    sid       = "ChangesRetention"
    actions   = ["kafka-cluster:AlterTopicDynamicConfiguration"]
    resources = [local.topic_arns["changes"]]
  }
}

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

# profiles: consume good events (group), write profiles/history, publish changes and bad rows.
data "aws_iam_policy_document" "profiles" {
  statement {
    sid       = "ConnectIdempotentProducer"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }

  statement {
    sid       = "ConsumeGood"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [local.topic_arns["good"]]
  }

  statement {
    sid       = "PublishChangesAndBadRows"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [local.topic_arns["changes"], local.topic_arns["bad"]]
  }

  statement {
    sid       = "ConsumerGroup"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = ["${local.msk_group_arn_prefix}/${var.consumer_group}"]
  }

  statement {
    sid = "ProfilesAndHistoryReadWrite"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
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

  statement {
    sid       = "OwnReaderGroups"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = ["${local.msk_group_arn_prefix}/lvp-viewer-*"]
  }

  statement {
    sid = "ProfilesAndHistoryRead"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
    ]
    resources = local.table_and_index_arns
  }

  statement {
    sid       = "ViewerStateReadWrite"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.viewer_state.arn]
  }
}

# topics job: create (and describe) the three topics.
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
}

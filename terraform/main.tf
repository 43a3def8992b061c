# live-viewer-profiles on AWS: VPC (or existing subnets), Amazon MSK with IAM auth (Serverless by
# default), DynamoDB, ECR, ECS Fargate services behind ALBs, Secrets Manager, CloudWatch.
# See docs/deploy.md for `terraform init/plan/apply` and the variables.

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = "live-viewer-profiles", Stack = var.name }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# Regular AZs only (no Local/Wavelength Zones); the first az_count names are used unless
# availability_zones lists them explicitly.
data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only a fixed slice (the first az_count sorted names, or var.availability_zones) is used, so a new AZ never changes the network.
  state = "available"

  filter {
    name   = "zone-type"
    values = ["availability-zone"]
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  create_vpc         = var.vpc_id == null
  vpc_id             = local.create_vpc ? module.network[0].vpc_id : var.vpc_id
  private_subnet_ids = local.create_vpc ? module.network[0].private_subnet_ids : var.private_subnet_ids
  public_subnet_ids  = local.create_vpc ? module.network[0].public_subnet_ids : var.public_subnet_ids

  image = "${aws_ecr_repository.app.repository_url}:${var.image_tag}"
  https = var.certificate_arn != null
}

module "network" {
  source = "./modules/network"
  count  = local.create_vpc ? 1 : 0

  name               = var.name
  cidr               = var.vpc_cidr
  azs                = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, var.az_count)
  single_nat_gateway = var.single_nat_gateway
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days
}

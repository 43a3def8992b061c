variable "name" {
  type        = string
  description = "Name prefix."
}

variable "cidr" {
  type        = string
  description = "CIDR block of the VPC."

  validation {
    condition     = can(cidrhost(var.cidr, 0))
    error_message = "cidr must be an IPv4 CIDR block."
  }
}

variable "azs" {
  type        = list(string)
  description = "Availability zones, one public and one private subnet each."

  validation {
    condition     = length(var.azs) >= 2
    error_message = "at least two availability zones are needed (load balancers, MSK)."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets instead of one per AZ."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key encrypting the flow log group."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the VPC flow logs."
  default     = 365
}

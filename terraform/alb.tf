# Two public Application Load Balancers: the collector (trackers post events) and the viewer
# (API + live page over SSE, hence the long idle timeout). HTTPS when certificate_arn is set
# (port 80 then only redirects); /metrics is never routed from the internet.

locals {
  load_balanced = {
    collector = { port = 9090, idle_timeout = 60 }
    viewer    = { port = 8080, idle_timeout = var.viewer_idle_timeout_s }
  }
}

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Attached to aws_lb.this[each.key]; checkov's graph resolves only one for_each instance.
  for_each = local.load_balanced

  name_prefix = "${var.name}-${each.key}-alb-"
  description = "${each.key} load balancer"
  vpc_id      = local.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Public endpoint by design (trackers run in viewers' browsers); restrict with allowed_ingress_cidrs. With a certificate port 80 only redirects to HTTPS.
  for_each = { for pair in setproduct(keys(local.load_balanced), var.allowed_ingress_cidrs) : "${pair[0]}-${pair[1]}" => { lb = pair[0], cidr = pair[1] } }

  security_group_id = aws_security_group.alb[each.value.lb].id
  description       = "HTTP from allowed clients"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = local.https ? { for pair in setproduct(keys(local.load_balanced), var.allowed_ingress_cidrs) : "${pair[0]}-${pair[1]}" => { lb = pair[0], cidr = pair[1] } } : {}

  security_group_id = aws_security_group.alb[each.value.lb].id
  description       = "HTTPS from allowed clients"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  for_each = local.load_balanced

  security_group_id            = aws_security_group.alb[each.key].id
  description                  = "to the ${each.key} tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_76:The WAF web ACL (waf.tf) carries AWSManagedRulesKnownBadInputsRuleSet, the Log4j rules; AnonymousIpList is left out on purpose: viewers behind VPNs are legitimate.
  #checkov:skip=CKV_AWS_91:Access logs are off by default on purpose: they record each request line with its query string (GET /i carries raw user ids) and the client IP; docs/deploy.md says what enabling them keeps.
  for_each = local.load_balanced

  name                       = "${var.name}-${each.key}"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.public_subnet_ids
  security_groups            = [aws_security_group.alb[each.key].id]
  idle_timeout               = each.value.idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "${var.name}/${each.key}"
      enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.public_subnet_ids) >= 2 && length(local.private_subnet_ids) >= 2
      error_message = "with vpc_id, give at least two public_subnet_ids and two private_subnet_ids (in different AZs)."
    }
  }
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; load balancer -> task traffic stays in the private subnets, limited by security groups to the service port.
  for_each = local.load_balanced

  name_prefix          = substr(each.key, 0, 6)
  port                 = each.value.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = local.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  lifecycle {
    create_before_destroy = true
  }
}

# Without a certificate: plain HTTP forwarding (trials). With one: redirect to HTTPS.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP is served only when no certificate_arn is given; with one this listener redirects to HTTPS.
  #checkov:skip=CKV_AWS_103:TLS policy applies to the HTTPS listener; this one is HTTP (redirect, or trial forwarding without a certificate).
  for_each = local.load_balanced

  load_balancer_arn = aws_lb.this[each.key].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.this[each.key].arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  for_each = local.https ? local.load_balanced : {}

  load_balancer_arn = aws_lb.this[each.key].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }
}

# Prometheus metrics stay inside the VPC.
resource "aws_lb_listener_rule" "hide_metrics" {
  for_each = local.load_balanced

  listener_arn = local.https ? aws_lb_listener.https[each.key].arn : aws_lb_listener.http[each.key].arn
  priority     = 10

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }
}

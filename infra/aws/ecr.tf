# The registry the pipeline pushes the app image to and the nodes pull from:
# the node role already reads ECR (AmazonEC2ContainerRegistryReadOnly), so no
# pull secret is needed and no anonymous rate limit applies.
resource "aws_ecr_repository" "app" {
  name = var.name

  # A tag is the git SHA the pipeline built; it must always name the same image.
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    # The AWS-managed ECR key: pulls need no KMS permission on the node role.
    encryption_type = "KMS"
  }
}

resource "aws_ecr_lifecycle_policy" "app" {
  repository = aws_ecr_repository.app.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged layers of interrupted pushes"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} images, enough to roll back to any recent release"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}

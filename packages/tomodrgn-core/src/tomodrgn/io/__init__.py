"""Reading and writing MRC stacks/volumes and STAR particle metadata."""

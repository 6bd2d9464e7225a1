"""The process a command runs in: its device, mixed precision, the batch-size search, the distributed set-up
(``torchrun``) and glibc's allocator settings. Nothing here knows about models or runs."""

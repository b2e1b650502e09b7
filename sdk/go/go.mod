module github.com/viva-ratelimit/viva-ratelimit/sdk/go

go 1.22

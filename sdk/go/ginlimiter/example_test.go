package ginlimiter_test

import (
	"net/http"

	"github.com/gin-gonic/gin"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
	"github.com/viva-ratelimit/viva-ratelimit/sdk/go/ginlimiter"
)

func ExampleMiddleware() {
	client := ratelimiter.New("localhost:8080")
	router := gin.Default()
	router.Use(ginlimiter.Middleware(client, "api_requests",
		ginlimiter.Identify(func(c *gin.Context) string {
			if user := c.GetString("user_id"); user != "" { // set by an earlier auth middleware
				return user
			}
			return c.ClientIP()
		})))
	router.GET("/hello", func(c *gin.Context) { c.String(http.StatusOK, "hello") })
	_ = router.Run("127.0.0.1:8000")
}

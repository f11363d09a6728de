package ui

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// CookieName is the session cookie. Its path is / because the dashboard's
// pages call /api/v1 with it.
const CookieName = "wamm_relay_session"

// CSRFHeader carries the session's CSRF token on state-changing requests.
const CSRFHeader = "X-CSRF-Token"

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

//go:embed static templates
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "templates/*.html"))

// Options configures the dashboard.
type Options struct {
	// AdminToken is what the login form asks for; it also keys the sessions.
	AdminToken string
	// SessionTTL is how long a login lasts; zero is DefaultSessionTTL.
	SessionTTL time.Duration
	Logger     logrus.FieldLogger
	Now        func() time.Time
	// LoginRejected, when set, is told of each login with a wrong token
	// instead of a warning line per attempt: the relay counts it and
	// samples the line, so guessing cannot flood the log.
	LoginRejected func(c *gin.Context)
}

// UI serves the dashboard and tells the admin API whose cookie is good.
type UI struct {
	token    string
	sessions *Sessions
	log      logrus.FieldLogger
	static   http.Handler
	rejected func(c *gin.Context)
}

// New builds the dashboard.
func New(o Options) (*UI, error) {
	if o.AdminToken == "" {
		return nil, errors.New("ui: AdminToken is required")
	}
	if o.Logger == nil {
		return nil, errors.New("ui: Logger is required")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	return &UI{
		token:    o.AdminToken,
		sessions: NewSessions(o.AdminToken, o.SessionTTL, o.Now),
		log:      o.Logger,
		static:   http.StripPrefix("/ui/static/", http.FileServer(http.FS(sub))),
		rejected: o.LoginRejected,
	}, nil
}

// Register routes /ui on r.
func (u *UI) Register(r gin.IRouter) {
	g := r.Group("/ui", securityHeaders)
	g.GET("", func(c *gin.Context) { c.Redirect(http.StatusFound, "/ui/") })
	g.GET("/", u.handleIndex)
	g.GET("/login", u.handleLoginForm)
	g.POST("/login", u.handleLogin)
	g.POST("/logout", u.handleLogout)
	g.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		u.static.ServeHTTP(c.Writer, c.Request)
	})
}

func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// Not no-referrer: under it Chromium sends "Origin: null" on form
	// posts, which the same-origin check must refuse.
	h.Set("Referrer-Policy", "same-origin")
	c.Next()
}

// Session returns the payload of r's valid session cookie.
func (u *UI) Session(r *http.Request) (string, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return "", false
	}
	p, err := u.sessions.Verify(ck.Value)
	return p, err == nil
}

// CheckWrite decides whether a state-changing request authenticated by the
// session of payload may proceed: it must come from the dashboard's own
// origin and carry the session's CSRF token in X-CSRF-Token.
func (u *UI) CheckWrite(r *http.Request, payload string) error {
	if !sameOrigin(r) {
		return errors.New("cross-origin request")
	}
	if !u.sessions.CheckCSRF(payload, r.Header.Get(CSRFHeader)) {
		return errors.New("missing or wrong CSRF token")
	}
	return nil
}

// sameOrigin rejects requests a browser marks as cross-site, or whose
// Origin names another host. A request with neither header (not from a
// browser) still needs the CSRF token.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return true
}

func (u *UI) handleIndex(c *gin.Context) {
	p, ok := u.Session(c.Request)
	if !ok {
		c.Redirect(http.StatusSeeOther, "/ui/login")
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	_ = pages.ExecuteTemplate(c.Writer, "index.html", map[string]string{"CSRF": u.sessions.CSRF(p)})
}

func (u *UI) handleLoginForm(c *gin.Context) {
	if _, ok := u.Session(c.Request); ok {
		c.Redirect(http.StatusSeeOther, "/ui/")
		return
	}
	u.renderLogin(c, http.StatusOK, "")
}

func (u *UI) renderLogin(c *gin.Context, status int, msg string) {
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	_ = pages.ExecuteTemplate(c.Writer, "login.html", map[string]string{"Error": msg})
}

func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// secure reports whether the client reached us over https, directly or
// through a proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (u *UI) handleLogin(c *gin.Context) {
	if !sameOrigin(c.Request) {
		u.renderLogin(c, http.StatusForbidden, "Cross-origin login refused.")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if !equalSecret(c.PostForm("token"), u.token) {
		if u.rejected != nil {
			u.rejected(c)
		} else {
			u.log.WithField("client_ip", c.ClientIP()).Warn("dashboard login rejected")
		}
		u.renderLogin(c, http.StatusUnauthorized, "Wrong admin token.")
		return
	}
	tok, exp, err := u.sessions.Issue()
	if err != nil {
		u.log.WithError(err).Error("dashboard session not issued")
		u.renderLogin(c, http.StatusInternalServerError, "Could not start a session.")
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: CookieName, Value: tok, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(c.Request),
	})
	u.log.WithField("client_ip", c.ClientIP()).Info("dashboard login")
	c.Redirect(http.StatusSeeOther, "/ui/")
}

func (u *UI) handleLogout(c *gin.Context) {
	if p, ok := u.Session(c.Request); ok {
		// A form post: the CSRF token rides in the form, not a header.
		if !sameOrigin(c.Request) || !u.sessions.CheckCSRF(p, c.PostForm("csrf")) {
			c.String(http.StatusForbidden, "forbidden")
			return
		}
		u.sessions.Revoke(p)
	}
	http.SetCookie(c.Writer, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(c.Request),
	})
	c.Redirect(http.StatusSeeOther, "/ui/login")
}

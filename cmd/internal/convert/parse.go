package convert

import (
	"fmt"
	"strings"
)

// word is one keepalived.conf word; quoted records whether it was written in double quotes,
// which changes its meaning for notify_* (a quoted command may hold blanks; an unquoted one is a
// single word followed by a user name).
type word struct {
	text   string
	quoted bool
}

// stmt is one keepalived.conf statement: its words, and the block that follows it if any.
type stmt struct {
	line     int
	words    []word
	block    []*stmt
	hasBlock bool
}

func (s *stmt) keyword() string { return s.words[0].text }

// args returns the words after the keyword.
func (s *stmt) args() []word { return s.words[1:] }

// argText joins the words after the keyword with blanks, as keepalived does for a value that may
// be written with or without quotes.
func (s *stmt) argText() string {
	parts := make([]string, 0, len(s.words)-1)
	for _, w := range s.words[1:] {
		parts = append(parts, w.text)
	}
	return strings.Join(parts, " ")
}

// SyntaxError is a keepalived.conf that cannot be read as words and blocks.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

type tokKind int

const (
	tokWord tokKind = iota
	tokOpen
	tokClose
	tokEOL
)

type token struct {
	kind tokKind
	word word
	line int
}

// lex splits keepalived.conf text into words, braces and line ends, as keepalived's parser does:
// blanks separate words; '{' and '}' are tokens of their own; a word starting with '#' or '!'
// starts a comment that runs to the end of the line; double quotes group words (a backslash
// escapes a quote or a backslash inside them); a backslash ending a line continues it.
func lex(text, file string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '\n':
			toks = append(toks, token{kind: tokEOL, line: line})
			line++
			i++
		case c == '\\' && (strings.HasPrefix(text[i+1:], "\n") || strings.HasPrefix(text[i+1:], "\r\n")):
			i = strings.IndexByte(text[i:], '\n') + i + 1
			line++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || c == '!':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == '{':
			toks = append(toks, token{kind: tokOpen, line: line})
			i++
		case c == '}':
			toks = append(toks, token{kind: tokClose, line: line})
			i++
		case c == '"':
			start := line
			var b strings.Builder
			i++
			closed := false
			for i < len(text) {
				ch := text[i]
				if ch == '\\' && i+1 < len(text) && (text[i+1] == '"' || text[i+1] == '\\') {
					b.WriteByte(text[i+1])
					i += 2
					continue
				}
				if ch == '"' {
					closed = true
					i++
					break
				}
				if ch == '\n' {
					break
				}
				b.WriteByte(ch)
				i++
			}
			if !closed {
				return nil, &SyntaxError{File: file, Line: start, Msg: "unterminated double quote"}
			}
			toks = append(toks, token{kind: tokWord, word: word{text: b.String(), quoted: true}, line: start})
		default:
			j := i
			for j < len(text) && !strings.ContainsRune(" \t\r\n\f\v{}\"", rune(text[j])) {
				j++
			}
			toks = append(toks, token{kind: tokWord, word: word{text: text[i:j]}, line: line})
			i = j
		}
	}
	return toks, nil
}

// parse builds the statement tree. A statement ends at a line end, at '{' (which opens its
// block) or at '}'. A '{' alone on a line opens the block of the statement before it.
func parse(toks []token, file string) ([]*stmt, error) {
	type frame struct {
		owner *stmt // nil at the top
		stmts []*stmt
		line  int
	}
	stack := []*frame{{}}
	var cur *stmt
	flush := func() {
		if cur != nil {
			top := stack[len(stack)-1]
			top.stmts = append(top.stmts, cur)
			cur = nil
		}
	}
	for _, t := range toks {
		top := stack[len(stack)-1]
		switch t.kind {
		case tokWord:
			if cur == nil {
				cur = &stmt{line: t.line}
			}
			cur.words = append(cur.words, t.word)
		case tokEOL:
			flush()
		case tokOpen:
			owner := cur
			if owner == nil {
				if n := len(top.stmts); n > 0 && !top.stmts[n-1].hasBlock {
					owner = top.stmts[n-1]
					top.stmts = top.stmts[:n-1]
				} else {
					return nil, &SyntaxError{File: file, Line: t.line, Msg: "'{' without a keyword before it"}
				}
			}
			cur = nil
			owner.hasBlock = true
			stack = append(stack, &frame{owner: owner, line: t.line})
		case tokClose:
			flush()
			if len(stack) == 1 {
				return nil, &SyntaxError{File: file, Line: t.line, Msg: "'}' without a matching '{'"}
			}
			stack = stack[:len(stack)-1]
			top.owner.block = top.stmts
			parent := stack[len(stack)-1]
			parent.stmts = append(parent.stmts, top.owner)
		}
	}
	flush()
	if len(stack) > 1 {
		open := stack[len(stack)-1]
		return nil, &SyntaxError{File: file, Line: open.line, Msg: fmt.Sprintf("the block of %s opened here is never closed", open.owner.keyword())}
	}
	return stack[0].stmts, nil
}

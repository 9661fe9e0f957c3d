<?xml version="1.0" encoding="UTF-8"?>
<!--
  Example: Parley's default export (urn:parley:compliance:1) as CSV (RFC 4180:
  every field quoted, quotes doubled, CRLF line ends), one row per event:
  time,room,kind,event,actor,user,seq,text_encoding,text
  XSLT 1.0 (xsltproc). Run it with the compliance option xslt-extension set to csv.
-->
<xsl:stylesheet version="1.0"
                xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:p="urn:parley:compliance:1">
  <xsl:output method="text" encoding="UTF-8"/>

  <xsl:template match="/p:conversation">
    <xsl:text>"time","room","kind","event","actor","user","seq","text_encoding","text"&#13;&#10;</xsl:text>
    <xsl:for-each select="p:events/*">
      <xsl:call-template name="row">
        <xsl:with-param name="user">
          <xsl:choose>
            <xsl:when test="self::p:message"><xsl:value-of select="@author"/></xsl:when>
            <xsl:when test="self::p:membership"><xsl:value-of select="@user"/></xsl:when>
            <xsl:when test="self::p:file"><xsl:value-of select="@uploadedBy"/></xsl:when>
          </xsl:choose>
        </xsl:with-param>
        <xsl:with-param name="node" select="(p:text | p:topic | p:name | p:json)[1]"/>
      </xsl:call-template>
    </xsl:for-each>
  </xsl:template>

  <xsl:template name="row">
    <xsl:param name="user"/>
    <xsl:param name="node"/>
    <xsl:call-template name="field"><xsl:with-param name="v" select="@at"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="/p:conversation/@room"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="local-name()"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="@event"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="@actor"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="$user"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="@seq"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="$node/@encoding"/></xsl:call-template>,<xsl:call-template name="field"><xsl:with-param name="v" select="$node"/></xsl:call-template>
    <xsl:text>&#13;&#10;</xsl:text>
  </xsl:template>

  <xsl:template name="field">
    <xsl:param name="v"/>
    <xsl:text>"</xsl:text>
    <xsl:call-template name="double-quotes"><xsl:with-param name="s" select="string($v)"/></xsl:call-template>
    <xsl:text>"</xsl:text>
  </xsl:template>

  <xsl:template name="double-quotes">
    <xsl:param name="s"/>
    <xsl:choose>
      <xsl:when test="contains($s, '&quot;')">
        <xsl:value-of select="substring-before($s, '&quot;')"/>
        <xsl:text>""</xsl:text>
        <xsl:call-template name="double-quotes"><xsl:with-param name="s" select="substring-after($s, '&quot;')"/></xsl:call-template>
      </xsl:when>
      <xsl:otherwise><xsl:value-of select="$s"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>
</xsl:stylesheet>
